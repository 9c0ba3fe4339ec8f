"""Console script `nextflow-k8s-service`: serve the app with uvicorn, configured by Settings."""

from __future__ import annotations

import logging
import sys

from nextflow_k8s_service.config import load_settings
from nextflow_k8s_service.errors import ConfigurationError
from nextflow_k8s_service.main import create_app
from nextflow_k8s_service.server import ServiceServer, server_config


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
    config = server_config(app, settings)
    ServiceServer(config, app=app).run()


if __name__ == "__main__":
    main()
