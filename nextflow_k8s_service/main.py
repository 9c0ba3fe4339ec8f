"""The composition root: `create_app(settings)` and the lifespan that builds and owns everything.

The lifespan builds the state (run store, event log, rate limiter), the executor (and its
Kubernetes client), the live view, the broadcaster, the run keeper, the event relay and the
pipeline manager, hands them to each other, and closes them in reverse order on shutdown.
Tests inject their own store or executor through `create_app`'s arguments.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from nextflow_k8s_service import __version__
from nextflow_k8s_service.api import demo, health, run_events, stream
from nextflow_k8s_service.api.deps import Services
from nextflow_k8s_service.api.errors import install_error_handlers
from nextflow_k8s_service.api.middleware import (
    BodySizeLimitMiddleware,
    SecurityHeadersMiddleware,
    WebSocketShortcutMiddleware,
)
from nextflow_k8s_service.config import ExecutorKind, Settings, load_settings
from nextflow_k8s_service.executors.base import Executor
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.models import is_run_id
from nextflow_k8s_service.services.event_log import EventLog
from nextflow_k8s_service.services.event_relay import EventRelay
from nextflow_k8s_service.services.live_view import LiveView
from nextflow_k8s_service.services.pipeline_manager import PipelineManager
from nextflow_k8s_service.services.rate_limit import MemoryRateLimiter, RateLimiter
from nextflow_k8s_service.services.run_archive import RunArchive
from nextflow_k8s_service.services.run_keeper import RunKeeper
from nextflow_k8s_service.services.state_store import MemoryStateStore, StateStore
from nextflow_k8s_service.utils.broadcaster import Broadcaster
from nextflow_k8s_service.utils.client_address import parse_networks

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
WEB_DIR = Path(__file__).resolve().parent / "web"


@dataclass(frozen=True, slots=True)
class _State:
    """The store split by concern: run lock and records, event log, rate limiter."""

    store: StateStore
    events: EventLog
    rate_limiter: RateLimiter


async def _build_state(settings: Settings, stack: AsyncExitStack) -> _State:
    """The state: all on Redis (one client, one pool) when REDIS_URL is set."""
    if settings.redis_url:
        # Imported here so that only the Redis mode loads the Redis client.
        from nextflow_k8s_service.services.redis_event_log import RedisEventLog
        from nextflow_k8s_service.services.redis_rate_limit import RedisRateLimiter
        from nextflow_k8s_service.services.redis_store import RedisStateStore

        redis_store = RedisStateStore.from_url(
            settings.redis_url,
            prefix=settings.redis_key_prefix,
            history_limit=settings.run_history_limit,
            ttl_minutes=settings.run_ttl_minutes,
            lease_seconds=settings.redis_lease_seconds,
        )
        stack.push_async_callback(redis_store.close)
        return _State(
            store=redis_store,
            events=RedisEventLog(
                redis=redis_store.client,
                prefix=settings.redis_key_prefix,
                lease_seconds=settings.redis_lease_seconds,
            ),
            rate_limiter=RedisRateLimiter(
                redis=redis_store.client, prefix=settings.redis_key_prefix
            ),
        )
    return _memory_state(
        MemoryStateStore(
            history_limit=settings.run_history_limit, ttl_minutes=settings.run_ttl_minutes
        )
    )


def _memory_state(store: MemoryStateStore) -> _State:
    return _State(store=store, events=store.events, rate_limiter=MemoryRateLimiter())


async def _build_executor(settings: Settings, stack: AsyncExitStack) -> Executor:
    executor: Executor
    if settings.executor == ExecutorKind.KUBERNETES:
        from nextflow_k8s_service.executors.kubernetes import KubernetesExecutor
        from nextflow_k8s_service.kubernetes.client import create_api_client

        api_client = await create_api_client(settings)
        stack.push_async_callback(api_client.close)
        executor = KubernetesExecutor(settings=settings, api_client=api_client)
    else:
        from nextflow_k8s_service.executors.local import LocalExecutor

        executor = LocalExecutor(settings=settings)
    stack.push_async_callback(executor.close)
    return executor


def create_app(
    settings: Settings | None = None,
    *,
    store: MemoryStateStore | None = None,
    executor: Executor | None = None,
) -> FastAPI:
    """Build the application. `store` (an in-memory store, with its event log) and `executor`,
    when given, are used instead of the ones the settings describe; the caller then owns
    closing them."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            state = await _build_state(settings, stack) if store is None else _memory_state(store)
            run_executor = executor or await _build_executor(settings, stack)
            view = LiveView()
            broadcaster = Broadcaster(
                max_clients=settings.max_websocket_clients,
                queue_frames=settings.websocket_queue_frames,
                queue_bytes=settings.websocket_queue_bytes,
                metrics=metrics,
            )
            keeper = RunKeeper(
                settings=settings,
                store=state.store,
                events=state.events,
                executor=run_executor,
                metrics=metrics,
            )
            relay = EventRelay(
                events=state.events,
                store=state.store,
                view=view,
                broadcaster=broadcaster,
                on_cancel=keeper.on_cancel_requested,
            )
            manager = PipelineManager(
                settings=settings,
                store=state.store,
                events=state.events,
                executor=run_executor,
                keeper=keeper,
                relay=relay,
                metrics=metrics,
            )
            stack.push_async_callback(manager.aclose)
            stack.callback(broadcaster.close_all)
            await manager.start_background()
            app.state.services = Services(
                settings=settings,
                manager=manager,
                broadcaster=broadcaster,
                view=view,
                metrics=metrics,
                rate_limiter=state.rate_limiter,
                trusted_proxies=parse_networks(settings.trusted_proxies),
                archive=RunArchive(events=state.events, store=state.store, broadcaster=broadcaster),
            )
            logger.info(
                "serving: executor=%s, state=%s",
                run_executor.name,
                "redis" if settings.redis_url else "memory",
            )
            yield

    # /docs with Swagger UI's script, style and icon served by the app (no CDN). No /redoc:
    # ReDoc's menu always loads its vendor's logo from the internet.
    app = FastAPIOffline(
        redoc_url=None,
        title="nextflow-k8s-service",
        version=__version__,
        description="Runs a Nextflow scatter-gather demo and streams it live.",
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Content-Type", "X-Cancel-Token", "Authorization"],
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    # Added last: outermost. The stream's connections skip the rest of the stack.
    app.add_middleware(
        WebSocketShortcutMiddleware,
        path=f"{API_PREFIX}/pipeline/stream",
        endpoint=stream.stream_endpoint,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(demo.router, prefix=API_PREFIX)
    demo.document_limits(app, settings)
    app.include_router(run_events.router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.include_router(health.router, prefix=API_PREFIX, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")

    # HEAD too: uptime checks and link previews ask for the page's headers only.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    # The address of every remembered run: the page opens it (and says so when it is unknown).
    @app.api_route("/runs/{run_id}", methods=["GET", "HEAD"], include_in_schema=False)
    async def run_page(run_id: str) -> Response:
        if not is_run_id(run_id):
            return HTMLResponse(_NOT_A_RUN, status_code=404)
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    return app


_NOT_A_RUN = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>No such run</title></head>'
    "<body><main><h1>No such run</h1><p>Run ids look like r0123456789a. "
    '<a href="/">Back to the live page</a>.</p></main></body></html>'
)
