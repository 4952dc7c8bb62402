"""The API reference builds from the docstrings with the command docs/index.md prints, and
no warning: every package's page is there, and the face's page lists its names."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import eventfold

ROOT = Path(__file__).resolve().parent.parent


def documented_command() -> list[str]:
    page = (ROOT / "docs" / "index.md").read_text()
    [command] = re.findall(r"```bash\n(python -m pdoc [^\n]+)\n```", page)
    return shlex.split(command)


def test_the_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    command = documented_command()
    assert command[:3] == ["python", "-m", "pdoc"]
    built = subprocess.run(
        [sys.executable, "-W", "error", *command[1:]], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert built.stderr == ""
    out = tmp_path / "build" / "api"
    for package in ("eventstore", "upcasters", "snapshots", "aggregates", "projections",
                    "processes", "messaging", "testing"):
        assert (out / "eventfold" / f"{package}.html").is_file(), package
    face = (out / "eventfold.html").read_text()
    for name in eventfold.__all__:
        assert f'id="{name}"' in face, name
