"""The built wheel carries the licence, the typing marker and the embedded corpus."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path):
    if not (ROOT / "pyproject.toml").exists():
        pytest.fail("run the tests from a source checkout (pyproject.toml not found)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "fastroute", src / "fastroute",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))  # fmt: skip
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("fastroute-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastroute/py.typed" in names
    assert "fastroute/app/data/pride_and_prejudice.txt.xz" in names
    assert "fastroute/app/data/README.md" in names
    licences = [n for n in names if n.split("/")[-1] == "LICENSE" and ".dist-info/" in n]
    assert licences, f"no LICENSE in the wheel's metadata: {names}"
    text = zipfile.ZipFile(wheel).read(licences[0]).decode()
    assert "BSD 3-Clause License" in text
    assert not any(n.endswith((".nbi", ".nbc")) for n in names)  # no Numba cache files
