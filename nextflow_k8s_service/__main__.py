"""Console script `nextflow-k8s-service`: serve the app with uvicorn, configured by Settings.

Command-line flags override the environment (and `.env`); everything else is an environment
variable (README, Configuration). Bad flags or settings exit with code 2 and one line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from nextflow_k8s_service import PROG, __version__
from nextflow_k8s_service.config import check_directories, load_settings
from nextflow_k8s_service.errors import ConfigurationError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the Nextflow scatter-gather demo: the page at /, the API under "
        "/api/v1 and its docs at /docs. Every other setting is an environment variable "
        "(see the README); flags override the environment.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--host", help="interface to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (env PORT, default 8000)")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"],
        help="logging level (env LOG_LEVEL, default INFO)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="development: restart when the package's code changes (no drain step)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    flags = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("log_level", args.log_level))
        if value is not None
    }
    try:
        settings = load_settings(**flags)
        check_directories(settings)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The app's modules load only now: flags and settings are answered without them.
    from nextflow_k8s_service.console import serve

    serve(settings, reload=args.reload)


if __name__ == "__main__":
    main()
