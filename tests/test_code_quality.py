"""The checks the project holds itself to: ruff, ruff format, mypy --strict and the import
contracts (the layering, in pyproject.toml's `[tool.importlinter]`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        pytest.param(
            ["mypy", "--strict", "nextflow_k8s_service"],
            marks=pytest.mark.slow(9),
            id="mypy-strict",
        ),
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_checks_pass(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    """api -> services -> executors -> kubernetes -> utils/run_events -> models/config, and
    only kubernetes/ (kubernetes_asyncio, aiohttp) and the Redis store (redis) import their
    client libraries."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _unowned_task_calls(source: str) -> list[int]:
    """Lines of `source` that start a task no owner keeps: `asyncio.create_task`,
    `asyncio.ensure_future` or a loop's `create_task` (a `TaskGroup`'s is owned)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, node.func.value
        on_loop = (isinstance(owner, ast.Name) and owner.id == "asyncio") or (
            "loop" in ast.unparse(owner)
        )
        if name == "ensure_future" or (name == "create_task" and on_loop):
            lines.append(node.lineno)
    return lines


def test_the_finder_of_unowned_tasks_finds_them() -> None:
    source = (
        "asyncio.create_task(a())\n"
        "loop.create_task(b())\n"
        "asyncio.get_running_loop().create_task(c())\n"
        "asyncio.ensure_future(d())\n"
        "group.create_task(e())\n"
        "supervisor.spawn('f', f())\n"
    )
    assert _unowned_task_calls(source) == [1, 2, 3, 4]


def test_every_task_has_an_owner() -> None:
    """Tasks start through `utils/tasks.py`'s `TaskSupervisor` (or a `TaskGroup`), nowhere
    else: a bare task is one nobody cancels and whose death nobody hears of."""
    package = ROOT / "nextflow_k8s_service"
    allowed = package / "utils" / "tasks.py"
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(package.rglob("*.py"))
        if path != allowed
        for line in _unowned_task_calls(path.read_text())
    ]
    assert found == []
