"""The state store of several replicas: Redis holds the run lock, the records and the relay.

Keys (all under one prefix, all with a TTL; nothing lives forever):

- `active-run`: the lock, a string holding the owner token (`owner_id`) with a lease
  (`PX lease`); renewed by its owner, so it vanishes within one lease when the owner dies.
- `state`: a hash `{run_id, owner, record}` describing the active run; `record` is the JSON
  of its `RunRecord`. It outlives the lock by `STATE_TTL_LEASES` leases, so a replica that
  notices a dead owner can still claim the run (`claim_orphan`); renewals refresh it.
- `logs:<run_id>`: the recent log lines of the active run, a list capped at 200 entries; same
  TTL as `state`.
- `run:<run_id>`: the JSON record of a finished run, kept `ttl_minutes` after it finished.
- `history`: a list of finished run ids, newest first, trimmed to `history_limit`.
- `op:<nonce>`: a one-minute marker that makes a retried script idempotent (below).
- channel `events`: the relay; every replica, the publisher included, receives each message.

Every multi-key change is one Lua script, so it is atomic against the other replicas. The
client retries commands after transient connection errors; a retry may re-run a script whose
reply was lost, so the scripts whose second run would answer differently (acquire, finish,
claim) record their success under a per-call nonce and report it again when re-run.
A retried `append_logs` or `publish` may, rarely, repeat its lines or message.

Only this module imports `redis`; its errors leave as `StoreUnavailableError`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import aclosing, contextmanager, suppress
from typing import Any

import redis.asyncio
from pydantic import ValidationError
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from nextflow_k8s_service.errors import StoreUnavailableError
from nextflow_k8s_service.models import CheckResult, LogLine, RelayMessage, RunRecord, utcnow
from nextflow_k8s_service.services import redis_scripts
from nextflow_k8s_service.services.state_store import (
    RECENT_LOG_LINES,
    AcquireResult,
    make_owner_id,
)

logger = logging.getLogger(__name__)

STATE_TTL_LEASES = 10
"""Lifetime of `state` and `logs:<id>` in leases: the window in which a dead owner's run can
still be claimed by another replica; afterwards the run is forgotten and the lock is free."""
OP_MARKER_MS = 60_000
CHECK_TIMEOUT_SECONDS = 2.0

# A command gives up after at most (1 + COMMAND_RETRIES) attempts, each bounded by the connect
# and socket timeouts, with 50 ms .. 1 s of jittered backoff in between.
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_INTERVAL_SECONDS = 15
COMMAND_RETRIES = 2

RELAY_POLL_SECONDS = 1.0
RELAY_PING_AFTER_SECONDS = 10.0
RELAY_DEAD_AFTER_SECONDS = 30.0
RELAY_BACKOFF_MIN_SECONDS = 0.2
RELAY_BACKOFF_MAX_SECONDS = 5.0
RELAY_WARN_EVERY = 12
_RELAY_PING = "relay-liveness"

_Arg = str | int


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn the client's errors (and socket errors, timeouts) into `StoreUnavailableError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError(f"redis {operation} failed: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _text(value: str | bytes | None) -> str | None:
    """A reply as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value


def _parse_record(raw: str | bytes, owner: str | bytes | None = None) -> RunRecord:
    """The stored JSON as a record; `owner`, when given, replaces its owner ('' = none)."""
    try:
        record = RunRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise StoreUnavailableError(f"redis holds an unreadable run record: {exc}") from exc
    if owner is not None:
        record = record.model_copy(update={"owner": _text(owner) or None})
    return record


class RedisStateStore:
    """`StateStore` on Redis, shared by every replica that uses the same prefix.

    The store owns the client it is given: `close()` closes it and its pool. Each `subscribe()`
    holds one extra connection of that pool while it is iterated. The lease of an active run is
    not renewed by the store: its owner calls `renew()` about every `lease_seconds / 3`.
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
        self._prefix = prefix
        self._history_limit = history_limit
        self._record_ttl_ms = max(1, int(ttl_minutes * 60_000))
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._state_ttl_ms = self._lease_ms * STATE_TTL_LEASES
        self._lock_key = f"{prefix}active-run"
        self._state_key = f"{prefix}state"
        self._history_key = f"{prefix}history"
        self._channel = f"{prefix}events"
        self._acquire = redis.register_script(redis_scripts.ACQUIRE)
        self._update = redis.register_script(redis_scripts.UPDATE)
        self._finish = redis.register_script(redis_scripts.FINISH)
        self._renew = redis.register_script(redis_scripts.RENEW)
        self._release = redis.register_script(redis_scripts.RELEASE)
        self._claim = redis.register_script(redis_scripts.CLAIM)
        self._append_logs = redis.register_script(redis_scripts.APPEND_LOGS)

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
        """A store with its own client for `url`; connects lazily, so it never raises for an
        unreachable server (the first command does, as `StoreUnavailableError`)."""
        client = redis.asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), COMMAND_RETRIES),
        )
        return cls(
            redis=client,
            prefix=prefix,
            history_limit=history_limit,
            ttl_minutes=ttl_minutes,
            lease_seconds=lease_seconds,
            owner_id=owner_id,
        )

    # --- the active run ---------------------------------------------------------------------

    @property
    def client(self) -> redis.asyncio.Redis:
        """The Redis client, for other Redis-backed parts sharing its pool (rate limits)."""
        return self._redis

    async def acquire(self, run: RunRecord) -> AcquireResult:
        mine = run.model_copy(update={"owner": self.owner_id}, deep=True)
        keys = [self._lock_key, self._state_key, self._logs_key(run.run_id), self._op_key()]
        args: list[_Arg] = [self.owner_id, self._lease_ms, self._state_ttl_ms, run.run_id]
        args += [mine.model_dump_json(), OP_MARKER_MS]
        with _translated("acquire"):
            reply = await self._acquire(keys=keys, args=args)
        if int(reply[0]) == 1:
            return AcquireResult(acquired=True, run=mine)
        return AcquireResult(acquired=False, run=_parse_record(reply[1], reply[2]))

    async def get_active(self) -> RunRecord | None:
        with _translated("get_active"):
            record, owner = await self._redis.hmget(self._state_key, ["record", "owner"])
        return None if record is None else _parse_record(record, owner or "")

    async def get_run(self, run_id: str) -> RunRecord | None:
        with _translated("get_run"):
            active_id, record, owner = await self._redis.hmget(
                self._state_key, ["run_id", "record", "owner"]
            )
            if _text(active_id) == run_id and record is not None:
                return _parse_record(record, owner or "")
            # A record trimmed off the history outlives its index entry until its TTL.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._run_key(run_id))
                pipe.lpos(self._history_key, run_id)
                finished, position = await pipe.execute()
        return None if finished is None or position is None else _parse_record(finished)

    async def update(self, run: RunRecord) -> bool:
        """Replace the active run's record, keeping its owner (the lock holder's token)."""
        with _translated("update"):
            applied = await self._update(
                keys=[self._state_key], args=[run.run_id, run.model_dump_json()]
            )
        return bool(applied)

    async def finish(self, run: RunRecord) -> bool:
        ttl_ms = self._record_ttl_ms
        if run.finished_at is not None:
            age_ms = (utcnow() - run.finished_at).total_seconds() * 1000
            ttl_ms = max(0, int(ttl_ms - max(0.0, age_ms)))
        keys = [
            self._state_key,
            self._lock_key,
            self._logs_key(run.run_id),
            self._run_key(run.run_id),
            self._history_key,
            self._op_key(),
        ]
        args: list[_Arg] = [run.run_id, run.model_dump_json(), ttl_ms, self._history_limit]
        args += [self._record_ttl_ms, OP_MARKER_MS]
        with _translated("finish"):
            applied = await self._finish(keys=keys, args=args)
        return bool(applied)

    async def history(self, limit: int) -> list[RunRecord]:
        if limit <= 0:
            return []
        with _translated("history"):
            run_ids = await self._redis.lrange(self._history_key, 0, self._history_limit - 1)
            if not run_ids:
                return []
            # Ids whose record expired are skipped; the list itself is trimmed by `finish`.
            raws = await self._redis.mget([self._run_key(_text(i) or "") for i in run_ids])
        return [_parse_record(raw) for raw in raws if raw is not None][:limit]

    # --- recent logs ----------------------------------------------------------------------

    async def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        # Only the last 200 can survive the trim; sending no more also keeps `unpack` small.
        payload = [line.model_dump_json() for line in lines[-RECENT_LOG_LINES:]]
        keys = [self._state_key, self._logs_key(run_id)]
        args: list[_Arg] = [run_id, RECENT_LOG_LINES, self._state_ttl_ms, *payload]
        with _translated("append_logs"):
            await self._append_logs(keys=keys, args=args)

    async def recent_logs(self, run_id: str) -> list[LogLine]:
        with _translated("recent_logs"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(self._state_key, "run_id")
                pipe.lrange(self._logs_key(run_id), 0, -1)
                active_id, raws = await pipe.execute()
        if _text(active_id) != run_id:
            return []
        return [LogLine.model_validate_json(raw) for raw in raws]

    # --- the lease ------------------------------------------------------------------------

    async def renew(self, run_id: str) -> bool:
        """Extend the lease (and the run's state) by one `lease_seconds`; one round trip.

        False when this owner no longer holds `run_id`: it finished, another replica claimed
        it after the lease ran out, or Redis lost it (a restart without persistence).
        """
        keys = [self._lock_key, self._state_key, self._logs_key(run_id)]
        with _translated("renew"):
            renewed = await self._renew(
                keys=keys, args=[self.owner_id, run_id, self._lease_ms, self._state_ttl_ms]
            )
        return bool(renewed)

    async def release(self, run_id: str) -> bool:
        """Give up the lock of `run_id` without finishing it, if this owner holds it.

        The run stays active and ownerless, so another replica's `claim_orphan` takes it over
        at once instead of after the lease (a hand-over on graceful shutdown). A non-owner's
        call changes nothing and returns False.
        """
        with _translated("release"):
            released = await self._release(
                keys=[self._lock_key, self._state_key], args=[self.owner_id, run_id]
            )
        return bool(released)

    async def claim_orphan(self) -> RunRecord | None:
        keys = [self._lock_key, self._state_key, self._op_key()]
        args: list[_Arg] = [self.owner_id, self._lease_ms, self._state_ttl_ms, OP_MARKER_MS]
        with _translated("claim_orphan"):
            record = await self._claim(keys=keys, args=args)
        if record is None:
            return None
        claimed = _parse_record(record, self.owner_id)
        logger.info("claimed run %s, whose owner stopped renewing its lease", claimed.run_id)
        return claimed

    # --- relay ----------------------------------------------------------------------------

    async def publish(self, message: RelayMessage) -> None:
        with _translated("publish"):
            await self._redis.publish(self._channel, message.model_dump_json())

    async def subscribe(self) -> AsyncIterator[RelayMessage]:
        """Yield every relayed message until the iterating task is cancelled.

        Never ends on its own: a lost connection is logged as a warning and re-established
        with capped exponential backoff. Messages published while it is down are lost (Redis
        pub/sub keeps nothing); a fresh snapshot is the consumer's way to catch up.
        """
        delay = RELAY_BACKOFF_MIN_SECONDS
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if failures:
                    logger.info("relay subscription to %s restored", self._channel)
                failures, delay = 0, RELAY_BACKOFF_MIN_SECONDS
                async with aclosing(self._messages(pubsub)) as messages:
                    async for message in messages:
                        yield message
            except (RedisError, OSError) as exc:
                failures += 1
                # Warn at once, then about once a minute while Redis stays away.
                level = logging.WARNING if failures % RELAY_WARN_EVERY == 1 else logging.DEBUG
                logger.log(
                    level,
                    "relay subscription to %s lost (%s); reconnecting in %.1f s (attempt %d)",
                    self._channel,
                    _describe(exc),
                    delay,
                    failures,
                )
            finally:
                with suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped upstream
            # A backoff between reconnection attempts: there is no event to await instead.
            await asyncio.sleep(delay)
            delay = min(delay * 2, RELAY_BACKOFF_MAX_SECONDS)

    async def _messages(self, pubsub: PubSub) -> AsyncGenerator[RelayMessage, None]:
        """Messages of one subscribed connection; raises `ConnectionError` when it goes dead.

        A silent connection is probed with PING after `RELAY_PING_AFTER_SECONDS`: a half-open
        TCP connection (a vanished node) raises nothing by itself.
        """
        loop = asyncio.get_running_loop()
        heard = loop.time()
        probed = False
        while True:
            raw: dict[str, Any] | None = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=RELAY_POLL_SECONDS
            )
            now = loop.time()
            if raw is None:
                if now - heard > RELAY_DEAD_AFTER_SECONDS:
                    raise RedisConnectionError("no answer to PING on the relay connection")
                if now - heard > RELAY_PING_AFTER_SECONDS and not probed:
                    await pubsub.ping(_RELAY_PING)
                    probed = True
                continue
            heard, probed = now, False
            if raw.get("type") != "message":
                continue
            try:
                yield RelayMessage.model_validate_json(raw["data"])
            except ValidationError:
                logger.warning("dropped an unreadable relay message on %s", self._channel)

    # --- service --------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await self._redis.ping()
        except TimeoutError:
            return CheckResult(ok=False, detail=f"redis: no answer in {CHECK_TIMEOUT_SECONDS} s")
        except (RedisError, OSError) as exc:
            return CheckResult(ok=False, detail=f"redis: {_describe(exc)}")
        return CheckResult(ok=True, detail="redis")

    async def close(self) -> None:
        """Close the client and its connection pool; subscribers must be cancelled first."""
        with suppress(RedisError, OSError):
            await self._redis.aclose()

    # --- keys -----------------------------------------------------------------------------

    def _logs_key(self, run_id: str) -> str:
        return f"{self._prefix}logs:{run_id}"

    def _run_key(self, run_id: str) -> str:
        return f"{self._prefix}run:{run_id}"

    def _op_key(self) -> str:
        return f"{self._prefix}op:{secrets.token_hex(8)}"


class RedisRateLimiter:
    """`RateLimiter` whose windows live in Redis, so every replica spends one budget.

    Fails open: while Redis is unreachable requests are not limited (the run lock still is).
    """

    def __init__(self, *, redis: redis.asyncio.Redis, prefix: str) -> None:
        self._prefix = f"{prefix}rate:"
        self._hit = redis.register_script(redis_scripts.RATE_HIT)

    async def hit(self, bucket: str, client: str, *, limit: int, window: float) -> float | None:
        if limit <= 0:
            return None
        window_ms = max(1, int(window * 1000))
        try:
            with _translated("rate limit"):
                hits, ttl_ms = await self._hit(
                    keys=[f"{self._prefix}{bucket}:{client}"], args=[window_ms]
                )
        except StoreUnavailableError as exc:
            logger.warning("rate limit not enforced, Redis unavailable: %s", exc)
            return None
        return None if int(hits) <= limit else int(ttl_ms) / 1000
