"""The admission side of the API fake: RBAC per identity, loaded from the rendered `k8s/` Roles
and RoleBindings, and a ResourceQuota on `limits.cpu` as the quota admission plugin applies it
(a refusal is a 403 "exceeded quota" at create time, never a Pending pod)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from nextflow_k8s_service.config import parse_cpu
from tests.deploy.kustomize_render import render_python

Obj = dict[str, Any]
Rules = dict[str, set[tuple[str, str, str]]]  # user -> {(verb, group, resource)}

K8S = Path(__file__).resolve().parents[2] / "k8s"
SERVICE_USER = "system:serviceaccount:nextflow:nextflow-k8s-service"
RUNNER_USER = "system:serviceaccount:nextflow:nextflow-runner"


@cache
def _rendered_rules() -> tuple[tuple[str, frozenset[tuple[str, str, str]]], ...]:
    objects = render_python(K8S)
    roles = {
        o["metadata"]["name"]: {
            (verb, group, resource)
            for rule in o["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
        for o in objects
        if o["kind"] == "Role"
    }
    grants: dict[str, set[tuple[str, str, str]]] = {}
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        for subject in binding["subjects"]:
            user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
            grants.setdefault(user, set()).update(roles[binding["roleRef"]["name"]])
    return tuple((user, frozenset(rules)) for user, rules in grants.items())


class Refused(Exception):
    """A create refused at admission (quota) or by RBAC; the message is the API server's."""


def manifest_rules() -> Rules:
    """user -> granted (verb, group, resource), from the Roles the manifests bind."""
    return {user: set(rules) for user, rules in _rendered_rules()}


def forbidden_message(user: str, verb: str, group: str, resource: str, namespace: str) -> str:
    """The API server's own wording of an RBAC denial."""
    plural, _, sub = resource.partition("/")
    what = f"{plural}/{sub}" if sub else plural
    return (
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{plural}"'
        + (f' subresource "{sub}"' if sub else "")
        + f' in API group "{group}" in the namespace "{namespace}"'
    )


def pod_cpu(pod: Obj) -> float:
    """The pod's `limits.cpu` as the quota counts it: containers summed, init containers max."""
    spec = pod.get("spec") or {}

    def limit(container: Obj) -> float:
        value = ((container.get("resources") or {}).get("limits") or {}).get("cpu")
        return parse_cpu(str(value)) if value is not None else 0.0

    total = sum(limit(c) for c in spec.get("containers") or [])
    return max([total, *(limit(c) for c in spec.get("initContainers") or [])])


@dataclass
class Quota:
    """A ResourceQuota on limits.cpu; pods not yet terminated (terminating ones too) count."""

    name: str
    cpu: float
    refusals: list[str] = field(default_factory=list)

    def admit(self, pod: Obj, pods: list[Obj]) -> str | None:
        """None if `pod` fits beside `pods`, else the API server's refusal message."""
        used = sum(pod_cpu(p) for p in pods if (p.get("status") or {}).get("phase") not in TERMINAL)
        requested = pod_cpu(pod)
        if used + requested <= self.cpu + 1e-9:
            return None
        message = (
            f'pods "{pod["metadata"]["name"]}" is forbidden: exceeded quota: {self.name}, '
            f"requested: limits.cpu={_cpu(requested)}, used: limits.cpu={_cpu(used)}, "
            f"limited: limits.cpu={_cpu(self.cpu)}"
        )
        self.refusals.append(message)
        return message


TERMINAL = ("Succeeded", "Failed")


def _cpu(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"
