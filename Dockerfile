# syntax=docker/dockerfile:1
# nextflow-k8s-service: build with uv, run on a slim Python as a non-root user.
#
#   docker build -t nextflow-k8s-service:dev .
#   docker run --rm -p 8000:8000 nextflow-k8s-service:dev      # EXECUTOR=local, in-memory state

# The builder and the runtime use the same Python image: the virtual environment's interpreter
# is a symlink to /usr/local/bin/python3.12, which must exist unchanged in the runtime stage.
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.12 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then the project itself, installed as a regular (non-editable) package, so the runtime stage
# needs the virtual environment only. README.md is the package's readme (pyproject.toml).
COPY README.md ./
COPY nextflow_k8s_service ./nextflow_k8s_service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric UID/GID, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
    && mkdir -p /workspace \
    && chown 10001:10001 /workspace
COPY --from=builder /app/.venv /app/.venv
COPY workflows/ /app/workflows/
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKSPACE_DIR=/workspace \
    WORKFLOW_DIR=/app/workflows \
    FORWARDED_ALLOW_IPS=127.0.0.1
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Docker only (Kubernetes uses the Deployment's probes). No curl in the slim image: stdlib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)"]
CMD ["nextflow-k8s-service"]
