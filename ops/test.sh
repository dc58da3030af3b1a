#!/usr/bin/env bash
# Install everything the tests need, then run the checks and the whole suite:
#   virtualenv + the locked, hashed requirements (requirements-test.txt; ops/lock.sh
#   refreshes it) + the package itself, redis-server and Chromium (apt-get,
#   where missing), Azurite (npm, pinned in ops/azurite), then ruff, mypy and pytest.
# Extra arguments go to pytest, e.g. `ops/test.sh -k conformance`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --require-hashes -r requirements-test.txt
"${pip[@]}" --no-deps -e .

# System packages from Debian/Ubuntu, where missing: redis-server (required) and
# Chromium with its driver (the page test; it is skipped, saying why, without them).
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
    && command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium chromium-driver"
if [ -n "$missing" ]; then
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    case "$missing" in
        *chromium*) $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
            || echo "ops/test.sh: Chromium could not be installed; the page test will be skipped" >&2 ;;
    esac
fi

# npm ci only when the lock changed since the last install.
if [ ! -f ops/azurite/node_modules/.package-lock.json ] \
    || [ ops/azurite/package-lock.json -nt ops/azurite/node_modules/.package-lock.json ]; then
    (cd ops/azurite && npm ci --no-audit --no-fund --loglevel=error)
fi

.venv/bin/ruff check starmap tests ops/bench
.venv/bin/ruff format --check starmap tests ops/bench
.venv/bin/mypy
exec .venv/bin/pytest "$@"
