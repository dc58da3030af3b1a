"""The locks and pyproject.toml agree (checked offline: tests talk to nobody).

`ops/lock.sh` writes requirements.txt (the service) and requirements-test.txt (with the
test extra) from pyproject.toml; installs use `--require-hashes`. A requirement added or
tightened in pyproject.toml without a refresh fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .rig import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def requirements(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [("requirements.txt", requirements()), ("requirements-test.txt", requirements() + requirements("test"))],
)
def test_every_requirement_is_pinned_within_its_range(lock: str, wanted: list[Requirement]) -> None:
    pinned = pins(ROOT / lock)
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lock}: {req.name} is not locked; run ops/lock.sh"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{lock}: {req.name}=={pinned[name]} is outside {req.specifier}; run ops/lock.sh"
        )


def test_every_pin_carries_hashes_and_the_service_lock_has_no_test_tools() -> None:
    for lock in ("requirements.txt", "requirements-test.txt"):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text().strip())
        for block in blocks:
            if PIN.match(block):
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"
    service = pins(ROOT / "requirements.txt")
    assert not {"pytest", "mypy", "ruff", "selenium"} & set(service)
