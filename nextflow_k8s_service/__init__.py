"""nextflow-k8s-service: run a Nextflow scatter-gather demo on Kubernetes and stream it live."""

from importlib.metadata import PackageNotFoundError, version

PROG = "nextflow-k8s-service"  # the distribution and its console script

try:
    __version__ = version(PROG)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
