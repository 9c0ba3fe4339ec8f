"""What handlers reach: one `Services` bundle built by the lifespan, via one dependency alias."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from nextflow_k8s_service.api.bodies import BodyCache
from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import RateLimitedError
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.services.live_view import LiveView
from nextflow_k8s_service.services.pipeline_manager import PipelineManager
from nextflow_k8s_service.services.rate_limit import RateLimiter
from nextflow_k8s_service.services.run_archive import RunArchive
from nextflow_k8s_service.utils.broadcaster import Broadcaster
from nextflow_k8s_service.utils.client_address import Network, client_address


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the lifespan built, for the handlers."""

    settings: Settings
    manager: PipelineManager
    broadcaster: Broadcaster
    view: LiveView
    metrics: Metrics
    rate_limiter: RateLimiter
    trusted_proxies: list[Network]
    archive: RunArchive
    bodies: BodyCache = field(default_factory=BodyCache)

    def client_of(self, connection: HTTPConnection) -> str:
        peer = connection.client.host if connection.client else None
        return client_address(peer, connection.headers.get("x-forwarded-for"), self.trusted_proxies)

    async def check_rate(self, bucket: str, connection: HTTPConnection, limit: int) -> None:
        """Raise `RateLimitedError` when the connection's client is over `limit` a minute."""
        retry_after = await self.rate_limiter.hit(
            bucket, self.client_of(connection), limit=limit, window=60.0
        )
        if retry_after is not None:
            raise RateLimitedError(
                f"too many {bucket} requests; try again later", retry_after=retry_after
            )


async def get_services(connection: HTTPConnection) -> Services:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, which
    costs a thread hop on every request for what is one attribute lookup."""
    services: Services = connection.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
