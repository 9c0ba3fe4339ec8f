"""Typed configuration: every knob of the service, read once from the environment (and `.env`).

One `Settings` object is built at start-up (by the console script or by `create_app`) and handed
explicitly to whatever needs it; no module reads the environment on its own.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nextflow_k8s_service.errors import ConfigurationError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_WORKFLOW_DIR = PACKAGE_DIR.parent / "workflows"
# What the local executor runs and the Kubernetes ConfigMap ships, relative to WORKFLOW_DIR.
WORKFLOW_FILES = ("demo.nf", "bin/generate.py", "bin/analyze.py", "bin/report.py")

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B?|[KMGTP]?B?)?\s*$", re.IGNORECASE)
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)(m?)\s*$")


class ExecutorKind(StrEnum):
    """Where the demo's tasks run."""

    LOCAL = "local"
    KUBERNETES = "kubernetes"


def parse_memory_bytes(value: str) -> int:
    """Parse a memory amount into bytes: `4Gi`/`512Mi` are binary, `4G`/`4 GB` decimal (SI).

    Nextflow itself reads `4 GB` as 4 GiB; the Kubernetes executor therefore hands Nextflow an
    exact MiB figure (see `kubernetes/jobs.py`) so pods request what the quota arithmetic of
    `/demo/preview` assumes. Raises `ValueError`.
    """
    match = _MEMORY_RE.match(value)
    if not match:
        raise ValueError(f"not a memory amount: {value!r} (examples: 4Gi, 512Mi, '4 GB')")
    number = float(match.group(1))
    unit = (match.group(2) or "").upper().removesuffix("B")
    base = 1024 if unit.endswith("I") else 1000
    exponent = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}[unit.removesuffix("I")]
    return int(number * base**exponent)


def parse_cpu(value: str) -> float:
    """Parse a CPU amount (`2`, `500m`, `1.5`) into cores. Raises `ValueError`."""
    match = _CPU_RE.match(value)
    if not match:
        raise ValueError(f"not a CPU amount: {value!r} (examples: 2, 500m, 1.5)")
    cores = float(match.group(1))
    return cores / 1000 if match.group(2) else cores


class Settings(BaseSettings):
    """Every setting of the service (SPEC §6). Environment variables use the upper-case name."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    executor: ExecutorKind = Field(
        ExecutorKind.LOCAL, description="Where tasks run: `local` subprocesses or `kubernetes`."
    )
    host: str = Field("127.0.0.1", description="Interface the console script listens on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port the console script listens on.")
    workspace_dir: Path = Field(
        Path(".workspace"), description="Directory holding `work/<run_id>` and `results/<run_id>`."
    )
    workflow_dir: Path = Field(
        REPO_WORKFLOW_DIR, description="Directory with demo.nf, nextflow.config and bin/."
    )
    demo_generate_seconds: float = Field(
        5.0, ge=0, le=600, description="Seconds each GENERATE task takes (0 = no wait)."
    )
    demo_analyze_seconds: float = Field(
        3.0, ge=0, le=600, description="Seconds each ANALYZE task takes (0 = no wait)."
    )
    demo_rows_per_batch: int = Field(
        100, ge=1, le=1_000_000, description="Synthetic rows written per batch."
    )
    default_batch_count: int = Field(5, ge=1, description="Batches when a request names none.")
    max_batch_count: int = Field(12, ge=1, le=100, description="Largest batch count accepted.")
    redis_url: str | None = Field(
        None, description="Redis URL; unset = in-memory state (one replica only)."
    )
    redis_key_prefix: str = Field(
        "nextflow:pipeline:", min_length=1, description="Prefix of every Redis key of the service."
    )
    redis_lease_seconds: float = Field(
        30.0, gt=1, le=600, description="Lifetime of the run lock; renewed by its owner (seconds)."
    )
    run_history_limit: int = Field(5, ge=1, le=100, description="Finished runs remembered.")
    run_ttl_minutes: float = Field(
        30.0, gt=0, description="Minutes a finished run stays in history (minutes)."
    )
    run_timeout_seconds: int = Field(
        3600, ge=10, description="Hard limit of one run (Job activeDeadlineSeconds; seconds)."
    )
    max_websocket_clients: int = Field(
        2000,
        ge=1,
        le=10_000,
        description="WebSocket clients per replica (a crowd of 1,000 fits, with room to spare).",
    )
    websocket_queue_frames: int = Field(
        256, ge=8, le=100_000, description="Frames a slow client may fall behind before 1013."
    )
    websocket_queue_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes of frames a slow client may have queued before 1013 (bytes).",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="CORS and WebSocket Origin allow-list (comma-separated or JSON list).",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses/CIDRs whose X-Forwarded-For is believed (comma-separated).",
    )
    rate_limit_runs_per_minute: int = Field(
        20, ge=0, description="POST /demo/run per client and minute (0 = unlimited)."
    )
    rate_limit_cancels_per_minute: int = Field(
        20, ge=0, description="DELETE /demo/cancel per client and minute (0 = unlimited)."
    )
    rate_limit_stream_connects_per_minute: int = Field(
        1200,
        ge=0,
        description=(
            "WebSocket connects per client address and minute (0 = unlimited): enough for a"
            " crowd of 1,000 behind one NAT to (re)connect at once."
        ),
    )
    max_request_body_bytes: int = Field(
        16_384, ge=256, description="Largest request body accepted (bytes)."
    )
    admin_token: str | None = Field(
        None, min_length=8, description="Bearer token that may cancel any run."
    )
    nextflow_namespace: str = Field("nextflow", description="Namespace of Jobs and task pods.")
    nextflow_image: str = Field("nextflow/nextflow:25.04.8", description="Controller image.")
    nextflow_version: str = Field("25.04.8", description="Nextflow version the controller pins.")
    nextflow_plugins_dir: str | None = Field(
        None,
        description="Plugins directory baked into the controller image (NXF_PLUGINS_DIR); "
        "unset = downloaded at run start.",
    )
    nextflow_offline: bool = Field(
        False,
        description="Run the controller with NXF_OFFLINE=true: no plugin download (needs "
        "NEXTFLOW_PLUGINS_DIR with nf-k8s in it).",
    )
    worker_image: str = Field("python:3.12-slim", description="Image of Nextflow's task pods.")
    nextflow_service_account: str = Field(
        "nextflow-runner", description="Service account of the controller and task pods."
    )
    workspace_pvc: str = Field(
        "nextflow-workspace", description="ReadWriteMany claim shared by controller and tasks."
    )
    workflow_configmap: str = Field(
        "demo-workflow", description="ConfigMap holding workflows/ (generated by kustomize)."
    )
    controller_cpu_limit: str = Field("2", description="Controller pod CPU (cores or millicores).")
    controller_memory_limit: str = Field("4Gi", description="Controller pod memory.")
    worker_cpu_limit: str = Field("1", description="Task pod CPU (cores).")
    worker_memory_limit: str = Field("4 GB", description="Task pod memory (Nextflow notation).")
    homelab_total_cpu: float = Field(14, gt=0, description="Quota CPU the preview checks (cores).")
    homelab_total_memory_gi: float = Field(
        50, gt=0, description="Quota memory the preview checks (GiB)."
    )
    kube_context: str | None = Field(None, description="kubeconfig context outside a cluster.")
    kubeconfig: Path | None = Field(
        None,
        description="kubeconfig file outside a cluster (default: $KUBECONFIG, ~/.kube/config).",
    )
    kube_request_timeout_seconds: float = Field(
        15.0, gt=0, le=300, description="Timeout of one Kubernetes API call (seconds)."
    )
    log_level: str = Field("INFO", description="Python logging level.")

    @field_validator("workspace_dir", "workflow_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Resolved once, against the directory the service starts in: every task runs in a
        # directory of its own, so a relative path would point somewhere else for each of them.
        return value.expanduser().resolve()

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError("must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG")
        return level

    @field_validator("controller_cpu_limit", "worker_cpu_limit")
    @classmethod
    def _check_cpu(cls, value: str) -> str:
        parse_cpu(value)
        return value

    @field_validator("controller_memory_limit", "worker_memory_limit")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        parse_memory_bytes(value)
        return value

    @model_validator(mode="after")
    def _check_bounds(self) -> Settings:
        if self.default_batch_count > self.max_batch_count:
            raise ValueError(
                f"DEFAULT_BATCH_COUNT ({self.default_batch_count}) exceeds "
                f"MAX_BATCH_COUNT ({self.max_batch_count})"
            )
        return self

    @model_validator(mode="after")
    def _check_offline(self) -> Settings:
        if self.nextflow_offline and not self.nextflow_plugins_dir:
            raise ValueError(
                "NEXTFLOW_OFFLINE needs NEXTFLOW_PLUGINS_DIR (an image with nf-k8s baked in)"
            )
        return self

    @property
    def work_root(self) -> Path:
        """Root of the per-run work directories."""
        return self.workspace_dir / "work"

    @property
    def results_root(self) -> Path:
        """Root of the per-run published results."""
        return self.workspace_dir / "results"


def check_directories(settings: Settings) -> None:
    """Start-up check of the two directories; `ConfigurationError` with one line if unusable.

    Local executor: WORKFLOW_DIR must hold the workflow and its scripts; WORKSPACE_DIR is
    created if needed and must take a file (tried, not guessed from permission bits, which root
    ignores). Kubernetes executor: the workflow comes from a ConfigMap and the service only
    reads reports from the workspace volume (mounted read-only), so WORKSPACE_DIR must exist.
    """
    workspace = settings.workspace_dir
    if settings.executor == ExecutorKind.KUBERNETES:
        if not workspace.is_dir():
            raise ConfigurationError(
                f"invalid configuration: WORKSPACE_DIR: {workspace} is not a directory "
                "(with EXECUTOR=kubernetes: where the workspace volume is mounted)"
            )
        return
    missing = [name for name in WORKFLOW_FILES if not (settings.workflow_dir / name).is_file()]
    if missing:
        raise ConfigurationError(
            f"invalid configuration: WORKFLOW_DIR: {settings.workflow_dir} lacks "
            + ", ".join(missing)
        )
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=workspace):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"invalid configuration: WORKSPACE_DIR: cannot create or write "
            f"{workspace}: {exc.strerror or exc}"
        ) from None


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment; raise `ConfigurationError` with one clear line.

    The line names the offending environment variable, e.g.
    `invalid configuration: MAX_BATCH_COUNT: Input should be less than or equal to 100`.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
            problems.append(f"{location}: {error['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None
