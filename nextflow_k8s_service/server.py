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

import uvicorn
from fastapi import FastAPI

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 2.0


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
