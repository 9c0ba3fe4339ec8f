"""A thin facade over `kubernetes_asyncio`: plain dicts in and out, a timeout on every call, and
every failure translated into `ExecutorOperationError` (with the HTTP status when there is one).

Every call is made with `_preload_content=False`: the generated client only checks the status
code when it preloads, so the status is checked here, and the JSON is decoded into plain dicts
(the builders in `jobs.py` speak dicts too; no model round trip).

Only this package imports `kubernetes_asyncio` and `aiohttp` (an import contract in
pyproject.toml checks it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from nextflow_k8s_service.errors import ExecutorOperationError

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Kind = Literal["jobs", "pods"]

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, ValueError)
_REFUSED = (401, 403)
REFUSAL_MEMORY_SECONDS = 300.0


def _call_kind(what: str) -> str:
    """`watch pods`, `read Job`: what a refusal is about, without object names."""
    return " ".join(what.split()[:2])


def server_watch_timeout(timeout_seconds: int) -> int:
    """The `timeoutSeconds` asked of the server for a watch of `timeout_seconds`: a tenth less,
    so that a watch still open at `timeout_seconds` has stalled (an open connection that
    stopped sending) and is abandoned then."""
    return max(1, timeout_seconds - max(1, timeout_seconds // 10))


def _status_error(what: str, status: int, body: bytes | str | None) -> ExecutorOperationError:
    """An error for a non-2xx answer, with the message of the API's `Status` body if any."""
    detail = ""
    if body:
        try:
            payload = json.loads(body)
            detail = f"{payload.get('reason') or ''}: {payload.get('message') or ''}".strip(": ")
        except (ValueError, AttributeError):
            detail = body[:200].decode("utf-8", "replace") if isinstance(body, bytes) else body
    return ExecutorOperationError(f"{what}: HTTP {status} {detail}".rstrip(), status=status)


class KubeApi:
    """The Kubernetes calls of the service, in one namespace.

    Raises `ExecutorOperationError` for every failure: `.status` is the HTTP status (403, 404,
    409, 410, 422, 5xx, 400 for a log that is not available yet) or None for a transport
    failure or a timeout. Whether that is fatal is the caller's decision.
    """

    def __init__(self, api_client: ApiClient, *, namespace: str, request_timeout: float) -> None:
        self._core = CoreV1Api(api_client)
        self._batch = BatchV1Api(api_client)
        self.namespace = namespace
        self.request_timeout = request_timeout
        self._refusals: dict[str, tuple[float, str]] = {}

    def refusals(self) -> dict[str, str]:
        """Kinds of call (`watch pods`) whose last answer was 401/403, within the last
        `REFUSAL_MEMORY_SECONDS` -> that error's text. Forgotten after that: readiness must
        not stay failed for ever once the Role is fixed and nothing repeats the call."""
        horizon = time.monotonic() - REFUSAL_MEMORY_SECONDS
        return {kind: text for kind, (at, text) in self._refusals.items() if at >= horizon}

    def _note(self, what: str, error: ExecutorOperationError | None) -> None:
        kind = _call_kind(what)
        if error is None:
            self._refusals.pop(kind, None)
        elif error.status in _REFUSED:
            self._refusals[kind] = (time.monotonic(), str(error))

    # --- one-shot calls -----------------------------------------------------------------------

    async def _call(self, what: str, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Obj:
        try:
            async with asyncio.timeout(self.request_timeout):
                response = await method(
                    namespace=self.namespace,
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                    **kwargs,
                )
                try:
                    body = await response.read()
                finally:
                    response.release()
        except ApiException as exc:
            error = _status_error(what, exc.status or 0, exc.body)
            self._note(what, error)
            raise error from exc
        except _TRANSPORT_ERRORS as exc:
            raise ExecutorOperationError(f"{what}: Kubernetes API unreachable: {exc!r}") from exc
        if not 200 <= response.status < 300:
            error = _status_error(what, response.status, body)
            self._note(what, error)
            raise error
        self._note(what, None)
        try:
            result: Obj = json.loads(body)
        except ValueError as exc:
            raise ExecutorOperationError(f"{what}: invalid JSON from the API") from exc
        return result

    async def create_job(self, body: Obj) -> Obj:
        return await self._call("create Job", self._batch.create_namespaced_job, body=body)

    async def read_job(self, name: str) -> Obj | None:
        """The Job, or None when it does not exist."""
        try:
            return await self._call(f"read Job {name}", self._batch.read_namespaced_job, name=name)
        except ExecutorOperationError as exc:
            if exc.status == 404:
                return None
            raise

    async def delete_job(self, name: str) -> bool:
        """Delete the Job and (in the background) its pods; False when it was already gone."""
        try:
            await self._call(
                f"delete Job {name}",
                self._batch.delete_namespaced_job,
                name=name,
                propagation_policy="Background",
            )
        except ExecutorOperationError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list_jobs(
        self, *, label_selector: str | None = None, limit: int | None = None
    ) -> Obj:
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if limit:
            kwargs["limit"] = limit
        return await self._call("list Jobs", self._batch.list_namespaced_job, **kwargs)

    async def create_config_map(self, body: Obj) -> Obj:
        return await self._call(
            "create ConfigMap", self._core.create_namespaced_config_map, body=body
        )

    async def delete_pods(self, *, label_selector: str, grace_seconds: int | None = None) -> None:
        """Delete the selected pods; `grace_seconds` overrides their termination grace period."""
        kwargs: dict[str, Any] = {}
        if grace_seconds is not None:
            kwargs["grace_period_seconds"] = grace_seconds
        await self._call(
            f"delete pods {label_selector}",
            self._core.delete_collection_namespaced_pod,
            label_selector=label_selector,
            propagation_policy="Background",
            **kwargs,
        )

    async def list_events(self, *, field_selector: str) -> Obj:
        """Events (core/v1) of the namespace, e.g. the FailedCreate of a Job."""
        return await self._call(
            "list events", self._core.list_namespaced_event, field_selector=field_selector
        )

    async def pod_log_tail(self, pod: str, *, container: str, lines: int) -> list[str]:
        """The last `lines` lines of a container's log (no follow)."""
        what = f"log of pod {pod}"
        response = await self._open_stream(
            what,
            lambda: self._core.read_namespaced_pod_log(
                name=pod,
                namespace=self.namespace,
                container=container,
                tail_lines=lines,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            ),
        )
        try:
            async with asyncio.timeout(self.request_timeout):
                body: bytes = await response.read()
        except _TRANSPORT_ERRORS as exc:
            raise ExecutorOperationError(f"{what}: {exc!r}") from exc
        finally:
            response.close()
        return body.decode("utf-8", "replace").splitlines()

    async def list_objects(
        self, kind: Kind, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> Obj:
        method = (
            self._batch.list_namespaced_job if kind == "jobs" else self._core.list_namespaced_pod
        )
        kwargs = _selectors(label_selector, field_selector)
        return await self._call(f"list {kind}", method, **kwargs)

    # --- streams ------------------------------------------------------------------------------

    async def watch(
        self,
        kind: Kind,
        *,
        resource_version: str,
        timeout_seconds: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncGenerator[Obj, None]:
        """Yield the watch events (`{"type", "object"}`) after `resource_version`.

        Ends when the server closes the stream (after `server_watch_timeout(timeout_seconds)`),
        or at `timeout_seconds` if it has not by then (a stall). An `ERROR` event
        is raised as `ExecutorOperationError` with the Status code (410 = resourceVersion too
        old: re-list). The response is closed when the generator is closed (use `aclosing`).
        """
        method = (
            self._batch.list_namespaced_job if kind == "jobs" else self._core.list_namespaced_pod
        )
        what = f"watch {kind}"
        # The server ends the watch before timeout_seconds, the deadline below ends a stalled
        # one at timeout_seconds; the socket read timeout is only a last resort.
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.request_timeout, sock_read=timeout_seconds + self.request_timeout
        )
        response = await self._open_stream(
            what,
            lambda: method(
                namespace=self.namespace,
                watch=True,
                resource_version=resource_version,
                timeout_seconds=server_watch_timeout(timeout_seconds),
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=timeout,
                **_selectors(label_selector, field_selector),
            ),
        )
        # A watch the server has not ended by timeout_seconds has stalled on an open
        # connection (no bytes, no close): end it, the caller resumes.
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        async with aclosing(_lines(what, response, deadline=deadline)) as lines:
            async for line in lines:
                if not line.strip():
                    continue
                try:
                    event: Obj = json.loads(line)
                except ValueError as exc:
                    raise ExecutorOperationError(f"{what}: malformed event") from exc
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ExecutorOperationError(
                        f"{what}: {status.get('reason')}: {status.get('message')}",
                        status=int(status.get("code") or 0) or None,
                    )
                yield event

    async def pod_log(
        self,
        pod: str,
        *,
        container: str,
        since_seconds: int | None,
        read_timeout: float,
    ) -> AsyncGenerator[str, None]:
        """Follow a container's log with timestamps; yield each line without its newline.

        Ends when the server closes the stream (the container terminated, or the connection
        was dropped: the caller tells which). Raises `ExecutorOperationError`: status 400 while
        the container has not started, 404 when the pod is gone, None on a read timeout.
        """
        what = f"log of pod {pod}"
        kwargs: dict[str, Any] = {"container": container, "follow": True, "timestamps": True}
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        timeout = aiohttp.ClientTimeout(sock_connect=self.request_timeout, sock_read=read_timeout)
        response = await self._open_stream(
            what,
            lambda: self._core.read_namespaced_pod_log(
                name=pod,
                namespace=self.namespace,
                _preload_content=False,
                _request_timeout=timeout,
                **kwargs,
            ),
        )
        async with aclosing(_lines(what, response)) as lines:
            async for line in lines:
                if not line.endswith(b"\n"):
                    # A partial last line means the stream was cut mid-line: drop it, the
                    # resumed follow sends it again.
                    return
                yield line.rstrip(b"\r\n").decode("utf-8", "replace")

    async def _open_stream(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Open a streaming response (watch, log follow); errors become the service's."""
        try:
            async with asyncio.timeout(self.request_timeout):
                response: Any = await call()
        except ApiException as exc:
            error = _status_error(what, exc.status or 0, exc.body)
            self._note(what, error)
            raise error from exc
        except _TRANSPORT_ERRORS as exc:
            raise ExecutorOperationError(f"{what}: Kubernetes API unreachable: {exc!r}") from exc
        if not 200 <= response.status < 300:
            try:
                error = _status_error(what, response.status, await _read_quietly(response))
                self._note(what, error)
                raise error
            finally:
                response.close()
        self._note(what, None)
        return response


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if label_selector:
        kwargs["label_selector"] = label_selector
    if field_selector:
        kwargs["field_selector"] = field_selector
    return kwargs


async def _lines(
    what: str, response: Any, *, deadline: float | None = None
) -> AsyncGenerator[bytes, None]:
    """The raw lines of a streaming response until the server closes it (or, with a loop-time
    `deadline`, until then: a stall is logged and ends the stream); closes it after."""
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    line: bytes = await response.content.readline()
            except TimeoutError:
                if deadline is None or asyncio.get_running_loop().time() < deadline:
                    raise ExecutorOperationError(f"{what}: stream timed out") from None
                logger.warning("%s: no end of stream by its deadline; reopening it", what)
                return
            except _TRANSPORT_ERRORS as exc:
                raise ExecutorOperationError(f"{what}: stream broken: {exc!r}") from exc
            if not line:
                return
            yield line
    finally:
        response.close()


async def _read_quietly(response: Any) -> bytes:
    try:
        body: bytes = await response.read()
    except _TRANSPORT_ERRORS:
        return b""
    return body
