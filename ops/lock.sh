#!/usr/bin/env bash
# Refresh the locked, hashed requirements from pyproject.toml (one command):
#   requirements.txt       the service (what the image installs)
#   requirements-test.txt  the service and its test extra (what ops/test.sh and CI install)
# One universal resolution serves every Python the project supports (3.11, 3.12) and
# every platform. tests/test_lock.py fails when pyproject.toml and the locks disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
common=(--universal --generate-hashes --python-version 3.11 --quiet --no-header)
.venv/bin/uv pip compile pyproject.toml "${common[@]}" --output-file requirements.txt
.venv/bin/uv pip compile pyproject.toml --extra test "${common[@]}" --output-file requirements-test.txt
echo "ops/lock.sh: requirements.txt and requirements-test.txt refreshed from pyproject.toml"
