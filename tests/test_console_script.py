"""The console script as shipped: its command line, and the README's first five minutes.

The first-run tests change no setting: every other test sets an absolute temporary
WORKSPACE_DIR and zero pacing; these run `uv run nextflow-k8s-service` in a copy of the working
tree (as a fresh clone would), and the installed console script from a directory outside the
repo, with no settings but the port, the default pacing (5 s + 3 s per batch) and the default
relative `.workspace`.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from nextflow_k8s_service import __version__
from nextflow_k8s_service.__main__ import main
from nextflow_k8s_service.console import announce
from tests.console import ConsoleService, bare_environment, free_port

REPO = Path(__file__).resolve().parents[1]
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
def _caller_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings a developer may have exported; would any reach the service, it would not start
    (or not with the defaults): the scenario must drop them all."""
    monkeypatch.setenv("WORKFLOW_DIR", str(tmp_path / "no-workflow-here"))
    monkeypatch.setenv("WORKSPACE_DIR", "/proc/not-writable")
    monkeypatch.setenv("DEMO_GENERATE_SECONDS", "not-a-number")
    monkeypatch.setenv("DEMO_ANALYZE_SECONDS", "0")
    monkeypatch.setenv("EXECUTOR", "kubernetes")


@pytest.fixture
async def services() -> AsyncIterator[list[ConsoleService]]:
    started: list[ConsoleService] = []
    yield started
    for service in started:
        await service.stop()


def copy_working_tree(target: Path) -> Path:
    """The repository's files (tracked and not ignored, as they are on disk) copied to `target`."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


async def run_one_batch(
    service: ConsoleService, open_stream: Callable[..., Any], workspace: Path
) -> None:
    """One batch to `succeeded`, its report through the API and on disk under `workspace`."""
    stream = await open_stream(service.http_url.replace("http", "ws") + "/api/v1/pipeline/stream")
    async with httpx.AsyncClient(base_url=service.http_url, timeout=30) as http:
        started = await http.post("/api/v1/demo/run", json={"batch_count": 1})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        complete = await stream.until_complete(run_id, timeout=120)
        assert complete["data"]["status"] == "succeeded", complete
        run = (await http.get(f"/api/v1/demo/runs/{run_id}")).json()
        assert run["status"] == "succeeded", run
        report = await http.get(f"/api/v1/demo/runs/{run_id}/report")
        assert report.status_code == 200, report.text
    on_disk = json.loads((workspace / "results" / run_id / "report.json").read_text())
    assert on_disk["batches"] == report.json()["batches"]
    assert len(on_disk["batches"]) == 1


@pytest.mark.slow(12)
@pytest.mark.usefixtures("_caller_settings")
async def test_a_fresh_copy_runs_with_the_readme_command(
    tmp_path: Path, services: list[ConsoleService], open_stream: Callable[..., Any]
) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    project = copy_working_tree(tmp_path / "clone")
    service = await ConsoleService.start(
        [uv, "run", "nextflow-k8s-service"], cwd=project, env=bare_environment(free_port())
    )
    services.append(service)
    await run_one_batch(service, open_stream, project / ".workspace")
    # The run command installed the service's dependencies and none of the test tooling.
    (site,) = project.glob(".venv/lib/python*/site-packages")
    installed = {path.name.split("-")[0].lower() for path in site.glob("*.dist-info")}
    assert {"fastapi", "uvicorn", "fastapi_offline", "nextflow_k8s_service"} <= installed
    assert not installed & {"pytest", "playwright", "ruff", "mypy", "schemathesis", "hypothesis"}


@pytest.mark.slow(10)
@pytest.mark.usefixtures("_caller_settings")
async def test_the_console_script_runs_from_any_directory(
    tmp_path: Path, services: list[ConsoleService], open_stream: Callable[..., Any]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    service = await ConsoleService.start(
        [str(SCRIPT)], cwd=elsewhere, env=bare_environment(free_port())
    )
    services.append(service)
    await run_one_batch(service, open_stream, elsewhere / ".workspace")


def test_the_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["uv run nextflow-k8s-service", "uv run --dev pytest"]
    ci = [
        line.strip()
        for line in (REPO / ".ci/run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == commands[1]


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


def test_a_refused_setting_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--port", "70000", "--host", "127.0.0.1"])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("nextflow-k8s-service: invalid configuration: PORT")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("host", "shown"),
    [("0.0.0.0", "127.0.0.1:8000"), ("::", "[::1]:8000"), ("10.1.2.3", "10.1.2.3:8000")],
)
def test_the_start_line_names_an_address_a_browser_can_open(
    capsys: pytest.CaptureFixture[str], host: str, shown: str
) -> None:
    announce(host, 8000)
    assert capsys.readouterr().out == (
        f"nextflow-k8s-service {__version__}: page http://{shown}/  API docs http://{shown}/docs\n"
    )


def test_flags_and_settings_are_answered_without_loading_the_app() -> None:
    """`--version`, a bad flag and a refused setting exit before the app's modules load."""
    probe = (
        "import sys\n"
        "from nextflow_k8s_service.__main__ import main\n"
        "for argv in (['--version'], ['--prot'], ['--port', '70000']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = {'uvicorn', 'fastapi', 'nextflow_k8s_service.main'} & set(sys.modules)\n"
        "print(sorted(loaded), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "[]"


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
