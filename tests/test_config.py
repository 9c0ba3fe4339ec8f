"""Settings: defaults, parsing, and one clear line for bad values."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nextflow_k8s_service.config import load_settings, parse_cpu, parse_memory_bytes
from nextflow_k8s_service.errors import ConfigurationError


def test_defaults_match_the_spec() -> None:
    settings = load_settings()
    assert settings.executor == "local"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.default_batch_count, settings.max_batch_count) == (5, 12)
    assert settings.redis_url is None
    assert settings.allowed_origins == ["*"]
    assert settings.nextflow_image == "nextflow/nextflow:25.04.8"
    assert (settings.workflow_dir / "demo.nf").is_file()


def test_origins_accept_a_comma_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().allowed_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("ALLOWED_ORIGINS", '["https://c.example"]')
    assert load_settings().allowed_origins == ["https://c.example"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXECUTOR", "docker"),
        ("PORT", "70000"),
        ("MAX_BATCH_COUNT", "0"),
        ("DEFAULT_BATCH_COUNT", "20"),
        ("WORKER_MEMORY_LIMIT", "lots"),
        ("CONTROLLER_CPU_LIMIT", "two"),
        ("LOG_LEVEL", "chatty"),
        ("DEMO_GENERATE_SECONDS", "-1"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    assert "\n" not in message
    assert variable in message or variable.split("_")[0] in message


def test_the_console_script_exits_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nextflow_k8s_service"],
        env={"PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "PORT" in result.stderr


def test_amounts_parse() -> None:
    assert parse_memory_bytes("4Gi") == 4 * 1024**3
    assert parse_memory_bytes("4 GB") == 4_000_000_000
    assert parse_memory_bytes("512Mi") == 512 * 1024**2
    assert parse_cpu("500m") == 0.5
    assert parse_cpu("2") == 2
    with pytest.raises(ValueError, match="memory"):
        parse_memory_bytes("4 bananas")
