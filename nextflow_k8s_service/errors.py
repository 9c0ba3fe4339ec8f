"""The service's own exceptions.

Outside libraries' errors (`redis.RedisError`, `kubernetes_asyncio`'s `ApiException`, `OSError`)
are translated into these at the module that talks to them, so the layers above never import a
client library. Routers map them to HTTP status codes in one place (`api/errors.py`).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigurationError(ServiceError):
    """A setting is invalid; raised at start-up, the message names the variable."""


class StoreUnavailableError(ServiceError):
    """The state store (Redis) cannot be reached or answered with an error."""


class StartsPausedError(StoreUnavailableError):
    """Runs may not start yet: the store came back without its data and the owner of a run
    in progress gets one lease to re-establish it first (maps to 503 with Retry-After)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LeaseLostError(ServiceError):
    """A write under a lease epoch was refused: the writer no longer owns the run.

    `data_lost` is True when the store knows no active run at all (it lost its data, or the
    run ended elsewhere), False when another epoch holds the run (it was taken over).
    """

    def __init__(self, message: str, *, data_lost: bool) -> None:
        super().__init__(message)
        self.data_lost = data_lost


class ExecutorUnavailableError(ServiceError):
    """The executor's backend (the Kubernetes API) cannot be reached right now (maps to 503)."""


class ExecutorStartError(ServiceError):
    """The executor refused or failed to start a run (maps to 502); the run ends `failed`."""


class ExecutorOperationError(ServiceError):
    """A call to the executor's backend failed; transient unless stated otherwise."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoActiveRunError(ServiceError):
    """An operation needs an active run and there is none (maps to 404)."""


class RunNotFoundError(ServiceError):
    """No active or remembered run has this id (maps to 404)."""


class ReportNotFoundError(ServiceError):
    """The run has no report (yet) (maps to 404)."""


class ForbiddenError(ServiceError):
    """The caller's token does not allow the operation (maps to 403)."""


class ShuttingDownError(ServiceError):
    """The service is draining and accepts no new runs (maps to 503)."""


class RateLimitedError(ServiceError):
    """The client used up its budget for this kind of request (maps to 429)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
