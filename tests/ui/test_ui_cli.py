"""``eventfold ui`` as a command: what it prints, what it refuses, how it stops."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner
from ui_support import APP, ROOT, child_environment, console_process

from eventfold.cli import app


def test_it_serves_read_only_until_sigint(shop_url: str, poison_file: Path) -> None:
    with console_process(shop_url, poison_file, allow_actions=False) as console:
        assert console.token is None
        page = httpx.get(f"{console.url}/parked", timeout=30)
        refused = httpx.post(f"{console.url}/parked/order_audit/retry", timeout=30)
    assert page.status_code == 200 and "order_audit" in page.text
    assert refused.status_code == 403
    # console_process checks that SIGINT ended it with exit code 0.


def test_with_actions_it_prints_a_fresh_token_each_start(
    shop_url: str, poison_file: Path
) -> None:
    with console_process(shop_url, poison_file) as first:
        pass
    with console_process(shop_url, poison_file) as second:
        pass
    assert first.token and second.token and first.token != second.token
    assert len(first.token) >= 20


@pytest.mark.parametrize("package", ["starlette", "jinja2", "uvicorn"])
def test_without_the_extra_it_says_what_to_install(tmp_path: Path, package: str) -> None:
    hide_package = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from eventfold.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_package, "--database", f"sqlite:///{tmp_path / 'x.db'}",
         "ui"],
        cwd=ROOT, env=child_environment(tmp_path / "poison"), capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve the web console: it needs the package {package!r}, which is not "
        "installed: pip install 'eventfold[ui]'"
    ]
    assert result.stdout == ""


def test_a_taken_port_is_one_clear_error(shop_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app, ["--database", shop_url, "--app", APP, "ui", "--port", str(port)],
            catch_exceptions=False,
        )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: cannot serve the web console: cannot listen on 127.0.0.1:{port}"
    )
    assert "choose another --port (0: any free port)" in result.stderr
