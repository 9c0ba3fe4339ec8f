"""The one `kubernetes_asyncio` ApiClient of the process.

In a pod (KUBERNETES_SERVICE_HOST set and a service-account token mounted) the in-cluster
configuration is used; elsewhere the kubeconfig (`KUBECONFIG` setting, else `$KUBECONFIG`, else
`~/.kube/config`) with the context `KUBE_CONTEXT` (default: the file's current context).
The caller (the lifespan) owns the client and closes it with `await api_client.close()`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Re-exported: the type of the client other layers hand on without importing kubernetes_asyncio.
from kubernetes_asyncio.client import ApiClient as ApiClient
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config
from kubernetes_asyncio.config.incluster_config import SERVICE_TOKEN_FILENAME

from nextflow_k8s_service.config import Settings
from nextflow_k8s_service.errors import ConfigurationError

DEFAULT_KUBECONFIG = Path("~/.kube/config")


def in_cluster(environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """Whether this process runs in a pod with a service-account token."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and Path(SERVICE_TOKEN_FILENAME).is_file()


def kubeconfig_path(settings: Settings) -> Path:
    """The kubeconfig file to read outside a cluster."""
    if settings.kubeconfig is not None:
        return settings.kubeconfig.expanduser()
    env = os.environ.get("KUBECONFIG", "")
    # $KUBECONFIG may list several files; the first one is the one kubectl writes to.
    first = next((part for part in env.split(os.pathsep) if part), None)
    return Path(first).expanduser() if first else DEFAULT_KUBECONFIG.expanduser()


async def create_api_client(settings: Settings) -> ApiClient:
    """Build the ApiClient; raise `ConfigurationError` (one line) when no configuration works.

    An explicit `KUBECONFIG` setting wins over the in-cluster configuration (useful to point a
    pod at another cluster, and for tests).
    """
    configuration = Configuration()
    try:
        if settings.kubeconfig is None and in_cluster():
            load_incluster_config(client_configuration=configuration)
        else:
            path = kubeconfig_path(settings)
            if not path.is_file():
                raise ConfigurationError(
                    f"invalid configuration: KUBECONFIG: no kubeconfig file at {path} "
                    "(and not running in a cluster)"
                )
            await load_kube_config(
                config_file=str(path),
                context=settings.kube_context,
                client_configuration=configuration,
                persist_config=False,
            )
    except ConfigException as exc:
        variable = "KUBE_CONTEXT" if settings.kube_context else "KUBECONFIG"
        raise ConfigurationError(f"invalid configuration: {variable}: {exc}") from None
    return ApiClient(configuration=configuration)
