"""The page's ES modules: type-checked with TypeScript (JSDoc, `// @ts-check`) and the reducer
unit-tested with Node's built-in test runner (tests/web/js/*.test.mjs).

Both need Node; the type check also needs TypeScript, installed from tools/typecheck's lock file
(`npm ci --prefix tools/typecheck`, done by .ci/run). Without them the tests skip locally and fail
under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPECHECK = ROOT / "tools" / "typecheck"
TSC = TYPECHECK / "node_modules" / "typescript" / "bin" / "tsc"
JS_TESTS = Path(__file__).resolve().parent / "js"


def _missing(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and REQUIRE_SERVICES=1")
    pytest.skip(reason)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        _missing("no node on PATH (apt-get install nodejs)")
    assert node is not None
    return node


@pytest.mark.slow(4)
def test_page_modules_type_check_without_errors() -> None:
    node = _node()
    if not TSC.exists():
        _missing("TypeScript is not installed (npm ci --prefix tools/typecheck)")
    result = subprocess.run(
        [node, str(TSC), "-p", str(TYPECHECK / "tsconfig.json"), "--pretty", "false"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_page_modules_use_ts_check() -> None:
    web = ROOT / "nextflow_k8s_service" / "web"
    unchecked = [
        path.name for path in sorted(web.glob("*.js")) if "// @ts-check" not in path.read_text()
    ]
    assert unchecked == []


def test_reducer_unit_tests_pass_under_node() -> None:
    node = _node()
    files = sorted(str(path) for path in JS_TESTS.glob("*.test.mjs"))
    assert files, "no reducer tests found"
    result = subprocess.run(
        [node, "--test", *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
