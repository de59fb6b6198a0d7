"""`mypy --strict` stays clean on src/ (STYLE.md: type-check src with mypy --strict)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(),
                    reason="mypy is not installed (it comes with the test extras)")
def test_mypy_strict_clean():
    mypy = Path(sys.executable).parent / "mypy"
    cmd = [str(mypy) if mypy.exists() else "mypy", "src/netstrata"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
