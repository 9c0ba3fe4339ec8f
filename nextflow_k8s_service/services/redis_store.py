"""The run lock and records of several replicas, in Redis (`StateStore`).

Key names are described in `redis_client.RedisKeys`; every multi-key change is one Lua script
(`redis_scripts`), so it is atomic against the other replicas. The client retries commands
after transient connection errors; a retry may re-run a script whose reply was lost, so the
scripts whose second run would answer differently (acquire, reestablish, finish, claim) record
their outcome under a per-call nonce and report it again when re-run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import redis.asyncio
from pydantic import ValidationError
from redis.exceptions import RedisError

from nextflow_k8s_service.errors import LeaseLostError, StartsPausedError, StoreUnavailableError
from nextflow_k8s_service.models import CheckResult, RunEvent, RunRecord, utcnow
from nextflow_k8s_service.services import redis_scripts
from nextflow_k8s_service.services.event_log import (
    MAX_BYTES_PER_RUN,
    MAX_ENTRIES_PER_RUN,
    MAX_LOG_LINES_PER_RUN,
    MAX_MARKERS,
)
from nextflow_k8s_service.services.redis_client import (
    LONG_TTL_MS,
    STATE_TTL_LEASES,
    RedisKeys,
    connect,
    describe,
    text,
    translated,
)
from nextflow_k8s_service.services.state_store import AcquireResult, make_owner_id

logger = logging.getLogger(__name__)

OP_MARKER_MS = 60_000
CHECK_TIMEOUT_SECONDS = 2.0

_Arg = str | int


def _parse_record(
    raw: str | bytes, owner: str | bytes | None = None, epoch: Any = None
) -> RunRecord:
    """The stored JSON as a record; `owner` ('' = none) and `epoch`, when given, replace its own."""
    try:
        record = RunRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise StoreUnavailableError(f"redis holds an unreadable run record: {exc}") from exc
    changes: dict[str, Any] = {}
    if owner is not None:
        changes["owner"] = text(owner) or None
    if epoch is not None:
        changes["epoch"] = int(text(epoch) or 0)
    return record.model_copy(update=changes) if changes else record


def _fenced(reply: Any, run_id: str) -> Any:
    """The reply of a fenced script, or `LeaseLostError` when it was refused."""
    status = int(reply[0])
    if status == 1:
        return reply[1] if len(reply) > 1 else None
    raise LeaseLostError(
        f"run {run_id}: write refused, "
        + ("it is not the active run" if status < 0 else "another lease epoch holds it"),
        data_lost=status < 0,
    )


class RedisStateStore:
    """`StateStore` on Redis, shared by every replica that uses the same prefix.

    The store owns the client it is given: `close()` closes it and its pool (which the event
    log and the rate limiter share). The lease of an active run is not renewed by the store:
    its owner calls `renew()` about every `lease_seconds / 3`.
    """

    def __init__(
        self,
        *,
        redis: redis.asyncio.Redis,
        prefix: str,
        history_limit: int,
        ttl_minutes: float,
        lease_seconds: float,
        owner_id: str | None = None,
    ) -> None:
        self.owner_id = owner_id or make_owner_id()
        self._redis = redis
        self._keys = RedisKeys(prefix)
        self._history_limit = history_limit
        self._record_ttl_ms = max(1, int(ttl_minutes * 60_000))
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._state_ttl_ms = self._lease_ms * STATE_TTL_LEASES
        self._generation = ""
        self._acquire = redis.register_script(redis_scripts.ACQUIRE)
        self._reestablish = redis.register_script(redis_scripts.REESTABLISH)
        self._generation_script = redis.register_script(redis_scripts.GENERATION)
        self._update = redis.register_script(redis_scripts.UPDATE)
        self._finish = redis.register_script(redis_scripts.FINISH)
        self._renew = redis.register_script(redis_scripts.RENEW)
        self._release = redis.register_script(redis_scripts.RELEASE)
        self._claim = redis.register_script(redis_scripts.CLAIM)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        history_limit: int,
        ttl_minutes: float,
        lease_seconds: float,
        owner_id: str | None = None,
    ) -> RedisStateStore:
        """A store with its own client for `url` (never raises for an unreachable server)."""
        return cls(
            redis=connect(url),
            prefix=prefix,
            history_limit=history_limit,
            ttl_minutes=ttl_minutes,
            lease_seconds=lease_seconds,
            owner_id=owner_id,
        )

    @property
    def client(self) -> redis.asyncio.Redis:
        """The Redis client, for the other Redis-backed parts sharing its pool."""
        return self._redis

    @property
    def record_ttl_ms(self) -> int:
        return self._record_ttl_ms

    # --- the lock ---------------------------------------------------------------------------

    async def acquire(self, run: RunRecord) -> AcquireResult:
        await self.check_generation()
        k = self._keys
        keys = [k.lock, k.state, k.op(secrets.token_hex(8)), k.epoch, k.generation, k.gate]
        keys.append(k.runs)
        args: list[_Arg] = [self.owner_id, self._lease_ms, self._state_ttl_ms, run.run_id]
        args += [run.model_dump_json(), OP_MARKER_MS, LONG_TTL_MS, MAX_MARKERS]
        with translated("acquire"):
            reply = await self._acquire(keys=keys, args=args)
        outcome = int(reply[0])
        if outcome == 2:
            retry_after = int(reply[1]) / 1000
            raise StartsPausedError(
                "the state store lost its data; runs start again once the run in progress "
                f"is re-established (in {math.ceil(retry_after)} s)",
                retry_after=retry_after,
            )
        if outcome == 1:
            mine = run.model_copy(update={"owner": self.owner_id, "epoch": int(reply[1])})
            return AcquireResult(acquired=True, run=mine)
        return AcquireResult(acquired=False, run=_parse_record(reply[1], reply[2], reply[3]))

    async def reestablish(self, run: RunRecord) -> RunRecord | None:
        k = self._keys
        keys = [k.lock, k.state, k.op(secrets.token_hex(8)), k.epoch, k.generation, k.gate]
        keys += [k.runs, k.run(run.run_id)]
        args: list[_Arg] = [self.owner_id, self._lease_ms, self._state_ttl_ms, run.run_id]
        args += [run.model_dump_json(), OP_MARKER_MS, LONG_TTL_MS, MAX_MARKERS, run.epoch]
        args.append(secrets.token_hex(8))
        with translated("reestablish"):
            epoch = await self._reestablish(keys=keys, args=args)
        if epoch is None:
            return None
        logger.warning("the state store had lost run %s; re-established it", run.run_id)
        return run.model_copy(update={"owner": self.owner_id, "epoch": int(epoch)})

    async def check_generation(self) -> None:
        k = self._keys
        args: list[_Arg] = [self._generation, secrets.token_hex(8), self._lease_ms, LONG_TTL_MS]
        with translated("check_generation"):
            current = text(await self._generation_script(keys=[k.generation, k.gate], args=args))
        if self._generation and current != self._generation:
            logger.warning("the state store lost its data; starting runs pauses for one lease")
        self._generation = current or ""

    async def get_active(self) -> RunRecord | None:
        with translated("get_active"):
            record, owner, epoch = await self._redis.hmget(
                self._keys.state, ["record", "owner", "epoch"]
            )
        return None if record is None else _parse_record(record, owner or "", epoch)

    async def get_run(self, run_id: str) -> RunRecord | None:
        with translated("get_run"):
            active_id, record, owner, epoch = await self._redis.hmget(
                self._keys.state, ["run_id", "record", "owner", "epoch"]
            )
            if text(active_id) == run_id and record is not None:
                return _parse_record(record, owner or "", epoch)
            # A record trimmed off the history outlives its index entry until its TTL.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._keys.run(run_id))
                pipe.lpos(self._keys.history, run_id)
                finished, position = await pipe.execute()
        return None if finished is None or position is None else _parse_record(finished)

    async def update(self, run: RunRecord) -> None:
        with translated("update"):
            reply = await self._update(
                keys=[self._keys.state], args=[run.run_id, run.epoch, run.model_dump_json()]
            )
        _fenced(reply, run.run_id)

    async def finish(self, run: RunRecord, events: Sequence[RunEvent], *, floor: int = 0) -> int:
        ttl_ms = self._record_ttl_ms
        if run.finished_at is not None:
            age_ms = (utcnow() - run.finished_at).total_seconds() * 1000
            ttl_ms = max(0, int(ttl_ms - max(0.0, age_ms)))
        k, run_id = self._keys, run.run_id
        keys = [k.state, k.lock, k.run(run_id), k.history, k.op(secrets.token_hex(8))]
        keys += [k.events(run_id), k.events_meta(run_id), k.runs]
        args: list[_Arg] = [run_id, run.epoch, run.model_dump_json(), ttl_ms, self._history_limit]
        args += [self._record_ttl_ms, OP_MARKER_MS, floor, MAX_ENTRIES_PER_RUN, MAX_BYTES_PER_RUN]
        args += [MAX_LOG_LINES_PER_RUN, MAX_MARKERS]
        args += redis_scripts.event_args(events)
        with translated("finish"):
            reply = await self._finish(keys=keys, args=args)
        return int(_fenced(reply, run_id))

    async def history(self, limit: int) -> list[RunRecord]:
        if limit <= 0:
            return []
        with translated("history"):
            run_ids = await self._redis.lrange(self._keys.history, 0, self._history_limit - 1)
            if not run_ids:
                return []
            # Ids whose record expired are skipped; the list itself is trimmed by `finish`.
            raws = await self._redis.mget([self._keys.run(text(i) or "") for i in run_ids])
        return [_parse_record(raw) for raw in raws if raw is not None][:limit]

    # --- the lease ------------------------------------------------------------------------

    async def renew(self, run_id: str, epoch: int) -> None:
        """Extend the lease (and the run's state and event log) by one lease; one round trip.
        The epoch holder may re-take its own lapsed lock while nobody claimed the run."""
        k = self._keys
        keys = [k.lock, k.state, k.events(run_id), k.events_meta(run_id)]
        args: list[_Arg] = [self.owner_id, run_id, epoch, self._lease_ms, self._state_ttl_ms]
        with translated("renew"):
            reply = await self._renew(keys=keys, args=args)
        _fenced(reply, run_id)

    async def release(self, run_id: str, epoch: int) -> bool:
        """Give up the lock of `run_id` without finishing it, if lease `epoch` holds it; the run
        stays active and ownerless, so another replica's `claim_orphan` takes it over at once."""
        with translated("release"):
            released = await self._release(
                keys=[self._keys.lock, self._keys.state], args=[self.owner_id, run_id, epoch]
            )
        return bool(released)

    async def claim_orphan(self) -> RunRecord | None:
        k = self._keys
        keys = [k.lock, k.state, k.op(secrets.token_hex(8)), k.epoch]
        args: list[_Arg] = [self.owner_id, self._lease_ms, self._state_ttl_ms, OP_MARKER_MS]
        args.append(LONG_TTL_MS)
        with translated("claim_orphan"):
            reply = await self._claim(keys=keys, args=args)
        if reply is None:
            return None
        claimed = _parse_record(reply[0], self.owner_id, reply[1])
        logger.info("claimed run %s, whose owner stopped renewing its lease", claimed.run_id)
        return claimed

    # --- service --------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await self._redis.ping()
        except TimeoutError:
            return CheckResult(ok=False, detail=f"redis: no answer in {CHECK_TIMEOUT_SECONDS} s")
        except (RedisError, OSError) as exc:
            return CheckResult(ok=False, detail=f"redis: {describe(exc)}")
        return CheckResult(ok=True, detail="redis")

    async def close(self) -> None:
        """Close the client and its connection pool; readers must be cancelled first."""
        with suppress(RedisError, OSError):
            await self._redis.aclose()
