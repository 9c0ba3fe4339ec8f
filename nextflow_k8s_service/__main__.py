"""Console script `nextflow-k8s-service`: serve the app with uvicorn, configured by Settings."""

from __future__ import annotations

import logging
import sys

import uvicorn

from nextflow_k8s_service.config import load_settings
from nextflow_k8s_service.errors import ConfigurationError
from nextflow_k8s_service.main import create_app
from nextflow_k8s_service.server import ServiceServer

#: Largest WebSocket message accepted from a client (clients are not expected to send any).
WS_MAX_MESSAGE_BYTES = 4096


def main() -> None:
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"nextflow-k8s-service: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Honour X-Forwarded-* only from TRUSTED_PROXIES (the app applies the same rule to
        # the addresses it rate-limits), so access logs name the real client.
        proxy_headers=True,
        forwarded_allow_ips=",".join(settings.trusted_proxies) or "127.0.0.1",
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=15,
    )
    ServiceServer(config, app=app).run()


if __name__ == "__main__":
    main()
