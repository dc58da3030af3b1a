"""The layers stated in the README, enforced: `lint-imports` with pyproject.toml's contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .rig import ROOT


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout
