"""The event log of several replicas: a Redis stream per run and a stream of run markers.

A run's stream `events:<id>` holds entries `<n>-0 {e: RunEvent JSON}`, n counting 1, 2, ...
(ids are assigned by the fenced append script, so they stay increasing even across a store that
lost its data). The `runs` stream holds `start`/`end`/`cancel` markers. Readers use blocking
`XREAD` from the last id they saw, on both streams at once: a reader that reconnects resumes
exactly where it stopped, and the blocking read is its own liveness check (a silent server
trips the socket timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from pydantic import ValidationError

from nextflow_k8s_service.errors import LeaseLostError
from nextflow_k8s_service.models import RunEvent
from nextflow_k8s_service.services import redis_scripts
from nextflow_k8s_service.services.event_log import (
    MAX_BYTES_PER_RUN,
    MAX_ENTRIES_PER_RUN,
    MAX_LOG_LINES_PER_RUN,
    MAX_MARKERS,
    Cursor,
    FollowBatch,
    LogEntry,
    RunMarker,
)
from nextflow_k8s_service.services.redis_client import (
    SOCKET_TIMEOUT_SECONDS,
    STATE_TTL_LEASES,
    RedisKeys,
    stream_id,
    text,
    translated,
)

logger = logging.getLogger(__name__)

MAX_BLOCK_SECONDS = SOCKET_TIMEOUT_SECONDS - 1.0
READ_BATCH = 1000


def _entries(raw: Any) -> list[LogEntry]:
    entries = []
    for entry_id, fields in raw:
        try:
            event = RunEvent.model_validate_json(fields["e"])
        except (ValidationError, KeyError):
            logger.warning("skipped an unreadable event log entry %s", text(entry_id))
            continue
        entries.append(LogEntry(id=stream_id(entry_id), event=event))
    return entries


def _markers(raw: Any) -> list[RunMarker]:
    markers = []
    for entry_id, fields in raw:
        kind, run_id = fields.get("kind"), fields.get("run_id")
        if kind in ("start", "end", "cancel") and run_id:
            markers.append(RunMarker(id=text(entry_id) or "0-0", kind=kind, run_id=run_id))
    return markers


class RedisEventLog:
    """`EventLog` on Redis streams, sharing the state store's client (which closes it)."""

    def __init__(
        self,
        *,
        redis: redis.asyncio.Redis,
        prefix: str,
        lease_seconds: float,
        max_entries: int = MAX_ENTRIES_PER_RUN,
        max_bytes: int = MAX_BYTES_PER_RUN,
        max_lines: int = MAX_LOG_LINES_PER_RUN,
    ) -> None:
        self._redis = redis
        self._limits = (max_entries, max_bytes, max_lines)
        self._keys = RedisKeys(prefix)
        # The active run's log lives as long as its state (renewals extend both).
        self._active_ttl_ms = max(1, int(lease_seconds * 1000)) * STATE_TTL_LEASES
        self._append = redis.register_script(redis_scripts.APPEND)

    async def append(
        self, run_id: str, events: Sequence[RunEvent], *, epoch: int, floor: int = 0
    ) -> int:
        if not events:
            return floor
        k = self._keys
        keys = [k.state, k.events(run_id), k.events_meta(run_id)]
        args: list[str | int] = [run_id, epoch, floor, *self._limits, self._active_ttl_ms]
        args += redis_scripts.event_args(events)
        with translated("append"):
            reply = await self._append(keys=keys, args=args)
        status = int(reply[0])
        if status != 1:
            raise LeaseLostError(
                f"run {run_id}: append refused under epoch {epoch}", data_lost=status < 0
            )
        return int(reply[1])

    async def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[LogEntry]:
        entries: list[LogEntry] = []
        start = f"({after}-0" if after else "-"
        key = self._keys.events(run_id)
        with translated("read"):
            while True:
                count = READ_BATCH if limit is None else min(READ_BATCH, limit - len(entries))
                raw = await self._redis.xrange(key, min=start, max="+", count=count) or []
                batch = _entries(raw)
                entries += batch
                if len(raw) < count or (limit is not None and len(entries) >= limit):
                    return entries
                start = f"({text(raw[-1][0])}"

    async def dropped_lines(self, run_id: str) -> int:
        with translated("dropped_lines"):
            dropped = await self._redis.hget(self._keys.events_meta(run_id), "dropped")
        return int(text(dropped) or 0)

    async def follow(self, cursor: Cursor, *, block: float) -> FollowBatch:
        streams: dict[Any, Any] = {self._keys.runs: cursor.markers or "0-0"}
        if cursor.run_id is not None:
            streams[self._keys.events(cursor.run_id)] = f"{cursor.after}-0"
        block_ms = max(1, int(min(block, MAX_BLOCK_SECONDS) * 1000)) if block > 0 else None
        with translated("follow"):
            reply = await self._redis.xread(streams, count=READ_BATCH, block=block_ms)
        batch = FollowBatch()
        for name, raw in _streams(reply):
            if name == self._keys.runs:
                batch.markers.extend(_markers(raw))
            else:
                batch.entries.extend(_entries(raw))
        return batch

    async def markers_tail(self) -> str:
        with translated("markers_tail"):
            top = await self._redis.xrevrange(self._keys.runs, count=1)
        return text(top[0][0]) or "0-0" if top else "0-0"

    async def request_cancel(self, run_id: str) -> None:
        with translated("request_cancel"):
            await self._redis.xadd(
                self._keys.runs,
                {"kind": "cancel", "run_id": run_id},
                maxlen=MAX_MARKERS,
                approximate=True,
            )


def _streams(reply: Any) -> list[tuple[str, Any]]:
    """XREAD's reply (RESP2: a list of [stream name, entries]) as pairs; None when it timed out."""
    return [(text(name) or "", raw) for name, raw in reply or []]
