"""The version has one source (pyproject.toml), which releases bump and the API reports."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx

from nextflow_k8s_service import __version__

ROOT = Path(__file__).resolve().parent.parent


def test_release_configuration_bumps_the_project_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    release = pyproject["tool"]["semantic_release"]
    assert release["version_toml"] == ["pyproject.toml:project.version"]
    assert release["commit_parser"] == "conventional"
    assert release["changelog"]["default_templates"]["changelog_file"] == "CHANGELOG.md"
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
    assert __version__ == pyproject["project"]["version"]


async def test_the_version_is_in_health_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json()["version"] == __version__
    assert (await client.get("/openapi.json")).json()["info"]["version"] == __version__
