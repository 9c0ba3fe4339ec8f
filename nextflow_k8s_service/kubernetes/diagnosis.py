"""Why a run failed, in words a visitor can act on, from the pods' container statuses and the
controller's log: an OOM kill, a failed init container, an image that cannot be pulled, a
ResourceQuota refusal. Pure functions; the run monitor (`run_monitor.py`) gathers their input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nextflow_k8s_service.kubernetes.api import Obj

# Waiting reasons that never resolve by themselves (nf-k8s fails the run on the first two, but
# leaves the pod Pending).
IMAGE_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})

_QUOTA_RE = re.compile(r"exceeded quota:[^\"\n]*")
_ERROR_RE = re.compile(r"^\s*ERROR ~ (.+)$")


@dataclass(frozen=True, slots=True)
class ContainerFailure:
    """A container that ended the pod: `init` when it is an init container (its log says why)."""

    container: str
    message: str
    init: bool = False


def _statuses(pod: Obj, key: str) -> list[Obj]:
    return list((pod.get("status") or {}).get(key) or [])


def image_failure(pod: Obj) -> str | None:
    """`image X cannot be pulled (Reason: message)` for a container stuck pulling, else None."""
    for status in _statuses(pod, "initContainerStatuses") + _statuses(pod, "containerStatuses"):
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in IMAGE_FAILURES:
            detail = f"{reason}: {waiting['message']}" if waiting.get("message") else reason
            return f"image {status.get('image') or '?'} cannot be pulled ({detail})"
    return None


def _memory_limit(pod: Obj, container: str) -> str | None:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def controller_failure(pod: Obj) -> ContainerFailure | None:
    """What ended the controller pod: a failed init container, an OOM kill, or an image pull."""
    for status in _statuses(pod, "initContainerStatuses"):
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            name = str(status.get("name") or "init")
            reason = terminated.get("reason") or "Error"
            return ContainerFailure(
                name,
                f"init container {name} failed ({reason}, exit code {terminated.get('exitCode')})",
                init=True,
            )
    for status in _statuses(pod, "containerStatuses"):
        state = status.get("state") or {}
        terminated = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
        if terminated and terminated.get("reason") == "OOMKilled":
            name = str(status.get("name") or "nextflow")
            limit = _memory_limit(pod, name)
            within = f" of {limit}" if limit else ""
            return ContainerFailure(
                name,
                f"the Nextflow controller was OOMKilled (exit code {terminated.get('exitCode')}): "
                f"it needs more than its memory limit{within} (CONTROLLER_MEMORY_LIMIT)",
            )
    image = image_failure(pod)
    if image is not None:
        return ContainerFailure("", f"the Nextflow controller's {image}")
    return None


def quota_refusal(lines: list[str]) -> str | None:
    """The `exceeded quota: ...` detail of the last ResourceQuota refusal in a log, if any."""
    for line in reversed(lines):
        match = _QUOTA_RE.search(line)
        if match:
            return match.group(0).rstrip(" ,.")
    return None


def nextflow_error(lines: list[str]) -> str | None:
    """The text of Nextflow's last `ERROR ~ ...` line, if any."""
    for line in reversed(lines):
        match = _ERROR_RE.match(line)
        if match:
            return match.group(1).strip()
    return None
