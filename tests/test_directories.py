"""WORKSPACE_DIR and WORKFLOW_DIR: absolute from start-up on, and refused when unusable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nextflow_k8s_service.config import (
    REPO_WORKFLOW_DIR,
    WORKFLOW_FILES,
    check_directories,
    load_settings,
)
from nextflow_k8s_service.errors import ConfigurationError


def test_relative_directories_resolve_against_the_start_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shutil.copytree(REPO_WORKFLOW_DIR, tmp_path / "flows")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKSPACE_DIR", "ws/../space")
    monkeypatch.setenv("WORKFLOW_DIR", "flows")
    settings = load_settings()
    assert settings.workspace_dir == tmp_path.resolve() / "space"
    assert settings.workflow_dir == tmp_path.resolve() / "flows"
    assert settings.work_root.is_absolute() and settings.results_root.is_absolute()
    monkeypatch.chdir("/")  # later changes of the working directory change nothing
    assert settings.workspace_dir == tmp_path.resolve() / "space"


def test_the_defaults_pass_and_create_the_workspace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("WORKSPACE_DIR", raising=False)
    monkeypatch.delenv("WORKFLOW_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    check_directories(load_settings())
    assert (tmp_path / ".workspace").is_dir()
    assert list((tmp_path / ".workspace").iterdir()) == []


@pytest.mark.parametrize("lacking", WORKFLOW_FILES)
def test_a_workflow_dir_without_the_workflow_is_refused(tmp_path: Path, lacking: str) -> None:
    shutil.copytree(REPO_WORKFLOW_DIR, tmp_path / "flows")
    (tmp_path / "flows" / lacking).unlink()
    settings = load_settings(workflow_dir=tmp_path / "flows", workspace_dir=tmp_path / "ws")
    with pytest.raises(ConfigurationError) as error:
        check_directories(settings)
    assert str(error.value).startswith("invalid configuration: WORKFLOW_DIR: ")
    assert lacking in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "workspace",
    [
        "file/below",  # a regular file where a directory should be
        "/proc/not-here",  # a place nobody, root included, can create anything
    ],
)
def test_an_unusable_workspace_is_refused(tmp_path: Path, workspace: str) -> None:
    (tmp_path / "file").write_text("not a directory")
    settings = load_settings(workspace_dir=tmp_path / workspace)
    with pytest.raises(ConfigurationError) as error:
        check_directories(settings)
    message = str(error.value)
    assert message.startswith("invalid configuration: WORKSPACE_DIR: cannot create or write ")
    assert str(settings.workspace_dir) in message and "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value"), [("WORKFLOW_DIR", "missing"), ("WORKSPACE_DIR", "/proc/x")]
)
def test_the_console_script_refuses_them_with_one_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nextflow_k8s_service"],
        cwd=tmp_path,
        env={variable: value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"{variable}: " in result.stderr


def test_kubernetes_mode_only_needs_the_mounted_workspace(tmp_path: Path) -> None:
    """The workflow ships in a ConfigMap and the service mounts the workspace read-only."""
    mounted = tmp_path / "mnt"
    mounted.mkdir()
    settings = load_settings(
        executor="kubernetes", workspace_dir=mounted, workflow_dir=tmp_path / "no-workflow"
    )
    check_directories(settings)
    assert list(mounted.iterdir()) == []
    with pytest.raises(ConfigurationError, match=r"^invalid configuration: WORKSPACE_DIR: .*mnt2"):
        check_directories(load_settings(executor="kubernetes", workspace_dir=tmp_path / "mnt2"))
    assert not (tmp_path / "mnt2").exists()
