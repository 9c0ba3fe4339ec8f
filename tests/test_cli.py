"""The command line: usage, version, flags over the environment, errors with exit code 2."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nextflow_k8s_service import __version__
from tests.console import ConsoleService, bare_environment, free_port

SCRIPT = Path(sys.executable).parent / "nextflow-k8s-service"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=bare_environment(free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def services() -> AsyncIterator[list[ConsoleService]]:
    started: list[ConsoleService] = []
    yield started
    for service in started:
        await service.stop()


def test_help_prints_usage_and_exits_0(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nextflow-k8s-service")
    for flag in ("--version", "--host", "--port", "--reload", "--log-level"):
        assert flag in result.stdout
    assert not (tmp_path / ".workspace").exists()


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"nextflow-k8s-service {__version__}\n")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--prot", "9000"], "unrecognized arguments: --prot"),
        (["serve"], "unrecognized arguments: serve"),
        (["--port", "eighty"], "--port: invalid int value"),
        (["--log-level", "chatty"], "--log-level: invalid choice"),
        (["--port", "70000"], "PORT: Input should be less than or equal to 65535"),
    ],
)
def test_bad_flags_exit_2_without_serving(tmp_path: Path, args: list[str], complaint: str) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert result.stdout == ""


async def test_flags_override_the_environment(
    tmp_path: Path, services: list[ConsoleService]
) -> None:
    port = free_port()
    env = bare_environment(free_port())
    env.update(PORT="not-a-port", HOST="256.0.0.1", LOG_LEVEL="chatty")
    service = await ConsoleService.start(
        [str(SCRIPT), "--port", str(port), "--host", "127.0.0.1", "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
    )
    services.append(service)
    assert service.http_url == f"http://127.0.0.1:{port}"
    assert service.docs_url == f"http://127.0.0.1:{port}/docs"
    async with httpx.AsyncClient(base_url=service.http_url, timeout=10) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        assert (await http.get("/docs")).status_code == 200
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert await service.stop() in (0, -signal.SIGTERM)
    services.clear()
    # --log-level warning: uvicorn's and the service's INFO lines are not written.
    assert "INFO" not in service.stderr.read_text()
