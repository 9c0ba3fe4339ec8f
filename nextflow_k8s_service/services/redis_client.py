"""What the Redis-backed parts share: the client factory, the key names, error translation.

Only the `redis_*` modules import `redis`; its errors leave them as `StoreUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import RedisError

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.utils.backoff import Backoff

# A command gives up after at most (1 + COMMAND_RETRIES) attempts, each bounded by the connect
# and socket timeouts, with 50 ms .. 1 s of jittered backoff in between. Blocking reads of the
# event log wait less than the socket timeout, so a silent server is noticed by the timeout.
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_INTERVAL_SECONDS = 15
COMMAND_RETRIES = 2
LONG_TTL_MS = 24 * 3600 * 1000
"""Lifetime of the epoch counter and the generation marker, refreshed while replicas run."""
STATE_TTL_LEASES = 10
"""Lifetime of the active run's state and event log in leases: the window in which a dead
owner's run can still be claimed by another replica; afterwards the run is forgotten."""


def connect(url: str) -> redis.asyncio.Redis:
    """A client for `url`; connects lazily, so it never raises for an unreachable server."""
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        retry=Retry(_CommandBackoff(Backoff(base=0.05, cap=1.0)), COMMAND_RETRIES),
    )


class _CommandBackoff(AbstractBackoff):
    """The package's `Backoff` as redis-py's retry wants it (`failures` counts from 1)."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff

    def compute(self, failures: int) -> float:
        return self._backoff.delay(failures)


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key of one deployment (all under `prefix`; every key has a TTL).

    - `lock`: the owner token of the active run, with a lease (`PX lease`).
    - `state`: hash `{run_id, owner, epoch, record}` of the active run; outlives the lock by
      a few leases so that another replica can claim an orphaned run.
    - `epoch`: the counter of lease epochs. `generation`: a token every replica knows; its
      disappearance means the store lost its data. `gate`: set for one lease after that:
      starting runs is paused.
    - `events:<id>` (stream) and `events-meta:<id>` (hash `bytes`, `lines`, `dropped`,
      `scan`): a run's event log, its payload bytes, its log lines kept and dropped, and
      where trimming looks for the oldest `log` entry.
    - `runs`: the stream of run start/end/cancel markers.
    - `run:<id>`: a finished run's record. `history`: finished run ids, newest first.
    - `op:<nonce>`: a one-minute marker that makes a retried script idempotent.
    """

    prefix: str

    @property
    def lock(self) -> str:
        return f"{self.prefix}active-run"

    @property
    def state(self) -> str:
        return f"{self.prefix}state"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch"

    @property
    def generation(self) -> str:
        return f"{self.prefix}generation"

    @property
    def gate(self) -> str:
        return f"{self.prefix}starts-paused"

    @property
    def history(self) -> str:
        return f"{self.prefix}history"

    @property
    def runs(self) -> str:
        return f"{self.prefix}runs"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}events:{run_id}"

    def events_meta(self, run_id: str) -> str:
        return f"{self.prefix}events-meta:{run_id}"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def op(self, nonce: str) -> str:
        return f"{self.prefix}op:{nonce}"


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Turn the client's errors (and socket errors, timeouts) into `StoreUnavailableError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"redis {operation} failed: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def text(value: str | bytes | None) -> str | None:
    """A reply as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value


def stream_id(value: str | bytes) -> int:
    """The integer id of a run's stream entry (`<n>-0`)."""
    return int((text(value) or "0").split("-", 1)[0])
