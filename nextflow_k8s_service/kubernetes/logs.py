"""Following one container's log: resumed after drops, without duplicated or lost lines.

The API's log filters are whole seconds (`sinceSeconds`; `kubernetes_asyncio` offers no
`sinceTime`), so a resumed follow asks for a few seconds more than needed and the follower
drops what it has already seen, by timestamp: lines before the last timestamp seen, and at
that timestamp as many lines as were already delivered. The kubelet writes RFC3339Nano
timestamps (trailing zeros trimmed), compared here as integer nanoseconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nextflow_k8s_service.errors import ExecutorOperationError
from nextflow_k8s_service.kubernetes.api import KubeApi
from nextflow_k8s_service.utils.backoff import Backoff

logger = logging.getLogger(__name__)

# Extra seconds asked for when resuming, against clock skew and whole-second rounding.
RESUME_OVERLAP_SECONDS = 5
# A follow that delivers nothing for this long is re-opened (the pod may be quiet or gone).
LOG_READ_TIMEOUT_SECONDS = 60.0

_TIMESTAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LogRecord:
    source: str
    message: str
    timestamp: datetime


def parse_timestamp(text: str) -> int | None:
    """RFC3339(Nano) -> integer nanoseconds since the epoch; None if not a timestamp."""
    match = _TIMESTAMP_RE.match(text)
    if not match:
        return None
    base, fraction, zone = match.groups()
    offset = "+00:00" if zone == "Z" else zone
    try:
        seconds = datetime.fromisoformat(base + offset).timestamp()
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def to_nanos(moment: datetime) -> int:
    """Exact integer nanoseconds since the epoch of an aware datetime (microsecond precision)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def from_nanos(nanos: int) -> datetime:
    """The datetime of integer nanoseconds since the epoch, truncated to the microsecond."""
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def split_line(line: str) -> tuple[int | None, str]:
    """`<timestamp> <message>` -> (nanoseconds or None, message)."""
    stamp, _, message = line.partition(" ")
    nanos = parse_timestamp(stamp)
    if nanos is None:
        return None, line
    return nanos, message


class LogFollower:
    """Follows the log of container `container` of pod `pod`, tagging lines with `source`.

    `run()` returns when the container has terminated and its log was read to the end
    (`pod_terminated()` was called, or `finish()`), or when the pod is gone (404). A 400
    ("waiting to start", ContainerCreating) is not an error: it waits for `pod_changed()` or a
    backoff and retries. Any other failure is retried with backoff. Cancel to stop at once.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        pod: str,
        container: str,
        source: str,
        emit: Callable[[LogRecord], None],
        read_timeout: float = LOG_READ_TIMEOUT_SECONDS,
        backoff: Backoff | None = None,
        since: datetime | None = None,
    ) -> None:
        self._api = api
        self.pod = pod
        self._container = container
        self.source = source
        self._emit = emit
        self._read_timeout = read_timeout
        self._backoff = backoff or Backoff(base=0.5, cap=10.0)
        self._terminated = False
        self._wake = asyncio.Event()
        # Lines up to `since` were delivered by an earlier process (adoption): skip them all.
        # (`since` has microseconds: every line within its microsecond counts as seen.)
        self._last_nanos: int | None = None if since is None else to_nanos(since) + 999
        self._delivered_at_last = 0 if since is None else 1 << 30
        self._last_received: float | None = None

    def pod_changed(self, *, terminated: bool) -> None:
        """The pod's phase changed (started, or terminated: then read to the end and stop)."""
        self._terminated = self._terminated or terminated
        self._wake.set()

    def finish(self) -> None:
        """Stop after the next end of stream (the run is over; its pods have terminated)."""
        self.pod_changed(terminated=True)

    def _since_seconds(self) -> int | None:
        if self._last_nanos is None:
            return None
        elapsed = time.time() - self._last_nanos / 1e9
        if self._last_received is not None:
            elapsed = max(elapsed, time.monotonic() - self._last_received)
        return max(1, math.ceil(elapsed)) + RESUME_OVERLAP_SECONDS

    def _accept(self, nanos: int | None, seen_at_last: list[int]) -> bool:
        """Whether a line is new; `seen_at_last[0]` counts this stream's lines at the last ts."""
        if nanos is None or self._last_nanos is None or nanos > self._last_nanos:
            if nanos is not None:
                self._last_nanos = nanos
                self._delivered_at_last = 1
                seen_at_last[0] = 1
            return True
        if nanos < self._last_nanos:
            return False
        seen_at_last[0] += 1
        if seen_at_last[0] <= self._delivered_at_last:
            return False
        self._delivered_at_last += 1
        return True

    async def run(self) -> None:
        failures = 0
        while True:
            terminated_before_open = self._terminated
            self._wake.clear()
            seen_at_last = [0]
            delivered = 0
            try:
                lines = self._api.pod_log(
                    self.pod,
                    container=self._container,
                    since_seconds=self._since_seconds(),
                    read_timeout=self._read_timeout,
                )
                async for line in lines:
                    nanos, message = split_line(line)
                    if not self._accept(nanos, seen_at_last):
                        continue
                    self._last_received = time.monotonic()
                    stamp = from_nanos(nanos) if nanos is not None else datetime.now(UTC)
                    self._emit(LogRecord(self.source, message, stamp))
                    delivered += 1
                # End of stream: the container exited, or the connection was dropped.
                if terminated_before_open:
                    return
                failures = 0 if delivered else failures + 1
                if failures == 0:
                    continue
            except ExecutorOperationError as exc:
                if exc.status == 404:
                    logger.debug("log of %s: pod gone", self.pod)
                    return
                failures += 1
                if exc.status != 400:
                    logger.info("log of %s interrupted (%s); resuming", self.pod, exc)
            await self._pause(failures)

    async def _pause(self, failures: int) -> None:
        """Wait for the pod to change or for the backoff delay, whichever comes first."""
        if self._wake.is_set():
            return
        try:
            async with asyncio.timeout(self._backoff.delay(failures)):
                await self._wake.wait()
        except TimeoutError:
            pass
