"""What handlers reach: one `Services` bundle built by the lifespan, via one dependency alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.metrics import Metrics
from nextflow_k8s_service.services.live_view import LiveView
from nextflow_k8s_service.services.pipeline_manager import PipelineManager
from nextflow_k8s_service.utils.broadcaster import Broadcaster


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the lifespan built, for the handlers."""

    settings: Settings
    manager: PipelineManager
    broadcaster: Broadcaster
    view: LiveView
    metrics: Metrics


def get_services(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
