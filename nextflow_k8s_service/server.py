"""uvicorn with a drain step: stream clients get 1001 before uvicorn's own shutdown.

uvicorn closes open WebSockets with 1012 as the first step of its shutdown, before the
lifespan's shutdown runs. `ServiceServer` first marks the replica as draining (readiness 503,
new runs refused) and closes every stream client with 1001 "going away", then lets uvicorn
carry on (the lifespan then cancels local runs or leaves Kubernetes runs to be re-adopted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from nextflow_k8s_service.api.stream import MAX_INCOMING_MESSAGE_BYTES
from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.connection_guards import (
    GuardedHttpToolsProtocol,
    GuardedWebSocketProtocol,
)

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 2.0


def server_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the service (the console script's and the tests')."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        # X-Forwarded-* is believed only from TRUSTED_PROXIES, the same rule the app applies
        # to the addresses it rate-limits; uvicorn's own default would trust 127.0.0.1.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.trusted_proxies) or None,
        "ws_max_size": MAX_INCOMING_MESSAGE_BYTES,
        # Compression is per connection: with it on, every frame is deflated once per client,
        # which makes fan-out CPU-bound (see benchmarks/RESULTS.md). Log frames are small.
        "ws_per_message_deflate": False,
        # The sans-I/O WebSocket implementation (guarded) costs the least CPU per frame sent and
        # has no task of its own per connection (benchmarks, figure 7).
        # Bounded request heads and receive times, and WebSockets aborted once given up on:
        # see connection_guards.py (uvicorn's httptools protocol bounds neither).
        "http": GuardedHttpToolsProtocol,
        "ws": GuardedWebSocketProtocol,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 15,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class ServiceServer(uvicorn.Server):
    """A uvicorn server for `app` (a `create_app` application) that drains before shutdown."""

    def __init__(self, config: uvicorn.Config, *, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.drain()
        await super().shutdown(sockets)

    async def drain(self) -> None:
        services = getattr(self._app.state, "services", None)
        if services is None:
            return
        services.manager.draining = True
        services.broadcaster.close_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                await services.broadcaster.wait_for_clients(lambda count: count == 0)
        logger.info("drained; %d stream clients left", services.broadcaster.client_count)
