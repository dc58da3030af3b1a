#!/usr/bin/env bash
# Set up a virtualenv (once) and run Star Map on the embedded default:
# an SQLite file under DATA_DIR (./var), one replica, http://localhost:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --require-hashes -r requirements.txt  # locked and hashed (ops/lock.sh refreshes it)
"${pip[@]}" --no-deps -e .
exec .venv/bin/python -m starmap "$@"
