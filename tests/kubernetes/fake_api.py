"""A small Kubernetes API server fake, speaking the wire protocol `kubernetes_asyncio` uses.

Served by aiohttp on 127.0.0.1; one namespace-agnostic store of Jobs (batch/v1), Pods and
ConfigMaps with a monotonic resourceVersion; lists with label selectors (`=`, `!=`, `in`,
`notin`, existence) and `metadata.name` field selectors; watches (chunked JSON lines,
ADDED/MODIFIED/DELETED/ERROR, resumed from a resourceVersion, `timeoutSeconds`); deletion with
owner-reference garbage collection; pod logs (`follow`, `timestamps` in RFC3339Nano,
`sinceSeconds`, `tailLines`, per container, 400 while the pod is pending). Faults: a 410
inside open watches and for resumes from before it, dropped watch or log streams, watches that
stall silently (connection open, no bytes, no end), raw events, any status for the next N
matching requests. Every request is recorded as an RBAC triple (verb, apiGroup, resource).

Admission (`fake_policy.py`): RBAC per identity from the rendered `k8s/` Roles (the kubeconfig's
token is the service's account; what the fake does as Nextflow is checked against the
runner's), and an optional ResourceQuota on limits.cpu: a refused pod is a 403 for its creator,
and for the Job controller a `FailedCreate` Event on the Job (which then has no pod).

The scenario methods (`set_pod_phase`, `add_task_pod`, `append_log`, `complete_job`, ...)
play the cluster: the Job controller (a Job's pod is created with the Job), the kubelet
(pod termination may take time: `controller_stop_seconds`, `task_stop_seconds`) and Nextflow
(`nextflow_submit` aborts the run on a refused pod as nf-k8s does; `resubmitting` runs
recreate a task pod deleted while their controller pod exists, as nf-k8s does on a 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.kubernetes.fake_failures import FailureScenarios
from tests.kubernetes.fake_policy import (
    RUNNER_USER,
    SERVICE_USER,
    TERMINAL,
    Quota,
    Refused,
    Rules,
    forbidden_message,
    manifest_rules,
)

Obj = dict[str, Any]
RESOURCES = ("jobs", "pods", "configmaps", "events")
_GROUPS = {"jobs": "batch", "pods": "", "configmaps": "", "events": ""}
_KINDS = {"jobs": "Job", "pods": "Pod", "configmaps": "ConfigMap", "events": "Event"}
_API_VERSIONS = {"jobs": "batch/v1", "pods": "v1", "configmaps": "v1", "events": "v1"}
_DROP = object()
_STALL = object()


def rfc3339nano(nanos: int) -> str:
    """Go's RFC3339Nano: trailing zeros of the fraction trimmed (and no fraction if zero)."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    frac = f"{fraction:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def status_body(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    410: "Expired",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _requirements(selector: str) -> list[tuple[str, str, set[str]]]:
    """Parse a label selector into (key, op, values); ops: =, !=, in, notin, exists, !exists."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in selector:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    parts.append(current)
    result: list[tuple[str, str, set[str]]] = []
    for raw in (part.strip() for part in parts):
        if not raw:
            continue
        if " notin " in raw or " in " in raw:
            op = "notin" if " notin " in raw else "in"
            key, _, values = raw.partition(f" {op} ")
            items = {v.strip() for v in values.strip().strip("()").split(",") if v.strip()}
            result.append((key.strip(), op, items))
        elif "!=" in raw:
            key, _, value = raw.partition("!=")
            result.append((key.strip(), "!=", {value.strip()}))
        elif "=" in raw:
            key, _, value = raw.replace("==", "=").partition("=")
            result.append((key.strip(), "=", {value.strip()}))
        elif raw.startswith("!"):
            result.append((raw[1:].strip(), "!exists", set()))
        else:
            result.append((raw, "exists", set()))
    return result


def matches(obj: Obj, label_selector: str | None, field_selector: str | None) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for key, op, values in _requirements(label_selector or ""):
        value = labels.get(key)
        ok = {
            "=": value in values,
            "in": value in values,
            "!=": value not in values,
            "notin": value not in values,
            "exists": key in labels,
            "!exists": key not in labels,
        }[op]
        if not ok:
            return False
    for term in filter(None, (field_selector or "").split(",")):
        path, _, value = term.partition("=")
        node: Any = obj
        for part in path.strip().split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if str(node) != value.strip():
            return False
    return True


@dataclass
class Fault:
    status: int
    verb: str | None
    resource: str | None
    times: int
    message: str


@dataclass(eq=False)
class _Watcher:
    resource: str
    namespace: str
    label_selector: str | None
    field_selector: str | None
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    # Events kept back (in order) while the watch is held; None when it is not.
    held: list[Any] | None = None


@dataclass(eq=False)
class _LogReader:
    pod: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False


async def _close(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionError):
        await response.write_eof()


class FakeKubernetes(FailureScenarios):
    """The fake API server and the scenario driver; see the module docstring."""

    def __init__(self, namespace: str = "nextflow") -> None:
        self.namespace = namespace
        self.store: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCES}
        self.history: dict[str, list[tuple[int, str, Obj]]] = {r: [] for r in RESOURCES}
        self.compacted: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self.resource_version = 0
        self.calls: list[tuple[str, str, str]] = []
        self.faults: list[Fault] = []
        self.logs: dict[str, list[tuple[int, str]]] = {}
        self._watchers: set[_Watcher] = set()
        self._log_readers: set[_LogReader] = set()
        self._streams_changed = asyncio.Condition()
        self._last_log_nanos = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.session_id = f"uuid-{uuid.uuid4()}"
        # Admission and the kubelet / Nextflow actors (see the module docstring).
        self.rbac: Rules | None = manifest_rules()
        self.tokens = {"fake-token": SERVICE_USER}
        self.denied: list[tuple[str, str, str, str]] = []
        self.quota: Quota | None = None
        self.controller_stop_seconds = 0.0
        self.task_stop_seconds = 0.0
        self.resubmitting: set[str] = set()
        self.resubmitted: list[str] = []
        self._refused_jobs: set[str] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._stopping = asyncio.Event()
        self._waiters: list[tuple[Any, asyncio.Future[None]]] = []

    # --- server -------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/log", self._pod_log)
        app.router.add_route("*", "/api/v1/namespaces/{ns}/{resource}", self._collection)
        app.router.add_route("*", "/api/v1/namespaces/{ns}/{resource}/{name}", self._item)
        app.router.add_route("*", "/apis/batch/v1/namespaces/{ns}/{resource}", self._collection)
        app.router.add_route("*", "/apis/batch/v1/namespaces/{ns}/{resource}/{name}", self._item)
        # handler_cancellation: a client that hangs up ends its watch or log stream at once.
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=1, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._stopping.set()
        for timer in self._timers:
            timer.cancel()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        for reader in list(self._log_readers):
            reader.dropped = True
            reader.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "tester", "user": {"token": "fake-token"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "tester", "namespace": "nextflow"},
                    }
                ],
                "current-context": "fake",
            }
        )

    # --- faults -------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        verb: str | None = None,
        resource: str | None = None,
        times: int = 1,
        message: str = "injected failure",
    ) -> None:
        """Answer the next `times` requests matching (verb, resource) with `status`."""
        self.faults.append(Fault(status, verb, resource, times, message))

    def expire_watches(self, resource: str) -> None:
        """History compacted: open watches get a 410 ERROR event, older resumes a 410."""
        self.compacted[resource] = self.resource_version
        for watcher in list(self._watchers):
            if watcher.resource == resource:
                watcher.queue.put_nowait(
                    {
                        "type": "ERROR",
                        "object": status_body(
                            410, "Expired", f"too old resource version ({self.resource_version})"
                        ),
                    }
                )
                watcher.queue.put_nowait(None)

    def drop_watches(self, resource: str) -> None:
        """Cut open watch connections of `resource` mid-stream."""
        for watcher in list(self._watchers):
            if watcher.resource == resource:
                watcher.queue.put_nowait(_DROP)

    def stall_watches(self, resource: str) -> None:
        """Open watches of `resource` go silent: the connection stays open, nothing more is
        sent, not even the end at timeoutSeconds (a half-dead proxy or API server)."""
        for watcher in list(self._watchers):
            if watcher.resource == resource:
                watcher.queue.put_nowait(_STALL)

    def hold_watches(self, resource: str, label_selector: str) -> int:
        """Open watches of `resource` with `label_selector` keep their events back (still in
        flight, as on a slow connection) until `release_watches`; returns how many."""
        held = 0
        for watcher in self._watchers:
            if watcher.resource == resource and watcher.label_selector == label_selector:
                watcher.held = []
                held += 1
        return held

    def release_watches(self) -> None:
        """Send what the held watches kept back."""
        for watcher in self._watchers:
            if watcher.held is not None:
                for event in watcher.held:
                    watcher.queue.put_nowait(event)
                watcher.held = None

    def inject_watch_event(self, resource: str, event: Any) -> None:
        """Send `event` as is to the open watches of `resource` (malformed objects)."""
        for watcher in list(self._watchers):
            if watcher.resource == resource:
                watcher.queue.put_nowait(event)

    async def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        """Wait until `predicate()` holds; it is checked after every change of the store."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def _changed(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate():
                future.set_result(None)

    # --- admission ----------------------------------------------------------------------------

    def authorize(self, user: str, verb: str, resource: str, namespace: str) -> str | None:
        """None if `user` may `verb` `resource`, else the API server's denial (recorded)."""
        group = _GROUPS.get(resource.partition("/")[0], "?")
        if self.rbac is None or (verb, group, resource) in self.rbac.get(user, set()):
            return None
        self.denied.append((user, verb, group, resource))
        return forbidden_message(user, verb, group, resource, namespace)

    def revoke(self, user: str, verb: str, resource: str) -> None:
        assert self.rbac is not None
        self.rbac[user].discard((verb, _GROUPS[resource.partition("/")[0]], resource))

    def _user(self, request: web.Request) -> str:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return self.tokens.get(token, "system:anonymous")

    def _admit_pod(self, pod: Obj) -> None:
        if self.quota is None:
            return
        namespace = pod["metadata"]["namespace"]
        pods = [p for (ns, _), p in self.store["pods"].items() if ns == namespace]
        refusal = self.quota.admit(pod, pods)
        if refusal is not None:
            raise Refused(refusal)

    def drop_log_streams(self, pod: str) -> None:
        for reader in list(self._log_readers):
            if reader.pod == pod:
                reader.dropped = True
                reader.wake.set()

    def open_log_streams(self, pod: str) -> int:
        return sum(1 for reader in self._log_readers if reader.pod == pod)

    def watch_count(self, resource: str) -> int:
        return sum(1 for watcher in self._watchers if watcher.resource == resource)

    async def streams_closed(self, timeout: float = 5) -> None:
        """Wait until every watch and log stream has been closed by its client."""
        async with asyncio.timeout(timeout), self._streams_changed:
            await self._streams_changed.wait_for(
                lambda: not self._watchers and not self._log_readers
            )

    async def _stream_ended(self) -> None:
        self._changed()
        async with self._streams_changed:
            self._streams_changed.notify_all()

    def _take_fault(self, verb: str, resource: str) -> Fault | None:
        for fault in self.faults:
            if fault.verb not in (None, verb) or fault.resource not in (None, resource):
                continue
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            return fault
        return None

    # --- store --------------------------------------------------------------------------------

    def _record(self, resource: str, kind: str, obj: Obj) -> None:
        asyncio.get_running_loop().call_soon(self._changed)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        snapshot = copy.deepcopy(obj)
        self.history[resource].append((self.resource_version, kind, snapshot))
        namespace = obj["metadata"]["namespace"]
        for watcher in list(self._watchers):
            if (
                watcher.resource == resource
                and watcher.namespace == namespace
                and matches(snapshot, watcher.label_selector, watcher.field_selector)
            ):
                if watcher.held is not None:
                    watcher.held.append({"type": kind, "object": snapshot})
                else:
                    watcher.queue.put_nowait({"type": kind, "object": snapshot})

    def create(self, resource: str, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace or meta.get("namespace") or self.namespace
        if "name" not in meta and "generateName" in meta:
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        key = (meta["namespace"], meta["name"])
        if key in self.store[resource]:
            raise KeyError(meta["name"])
        if resource == "pods":
            self._admit_pod(obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        obj.setdefault("apiVersion", _API_VERSIONS[resource])
        obj.setdefault("kind", _KINDS[resource])
        self.store[resource][key] = obj
        self._record(resource, "ADDED", obj)
        if resource == "jobs":
            self._start_job_pod(obj)
        return obj

    def update(self, resource: str, name: str, mutate: Any) -> Obj:
        obj = self.store[resource][(self.namespace, name)]
        mutate(obj)
        self._record(resource, "MODIFIED", obj)
        if resource == "pods":
            for reader in self._log_readers:
                if reader.pod == name:
                    reader.wake.set()
        return obj

    def delete(
        self,
        resource: str,
        name: str,
        *,
        namespace: str | None = None,
        grace_seconds: float | None = None,
    ) -> Obj | None:
        """Delete at once, or (pods, with a stop time) mark terminating and remove later."""
        key = (namespace or self.namespace, name)
        obj = self.store[resource].get(key)
        if obj is None:
            return None
        if resource == "pods":
            labels = obj["metadata"].get("labels") or {}
            stop = self.controller_stop_seconds if "job-name" in labels else self.task_stop_seconds
            if grace_seconds is not None:
                stop = min(stop, grace_seconds)
            if stop > 0:
                if "deletionTimestamp" not in obj["metadata"]:
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.update(
                        "pods", name, lambda p: p["metadata"].update(deletionTimestamp=stamp)
                    )
                    loop = asyncio.get_running_loop()
                    self._timers.append(loop.call_later(stop, self._remove_pod, key))
                return obj
        return self._remove(resource, key)

    def _remove_pod(self, key: tuple[str, str]) -> None:
        obj = self._remove("pods", key)
        labels = (obj or {}).get("metadata", {}).get("labels") or {}
        run_id = labels.get("nextflow.io/runName")
        if obj is not None and run_id in self.resubmitting and self._has_controller(run_id):
            # nf-k8s polls the pod, gets a 404 and submits the task again.
            process = labels["nextflow.io/processName"]
            task = labels["nextflow.io/taskName"]
            index = int(task.rsplit("_", 1)[1]) if "_" in task else None
            self.resubmitted.append(self.add_task_pod(run_id, process, index))

    def _has_controller(self, run_id: str) -> bool:
        try:
            self.controller_pod(run_id)
        except KeyError:
            return False
        return True

    def _remove(self, resource: str, key: tuple[str, str]) -> Obj | None:
        obj = self.store[resource].pop(key, None)
        if obj is None:
            return None
        name = key[1]
        self._record(resource, "DELETED", obj)
        if resource == "pods":
            for reader in self._log_readers:
                if reader.pod == name:
                    reader.wake.set()
        uid = obj["metadata"]["uid"]
        for dependent_resource in RESOURCES:
            for dependent in list(self.store[dependent_resource].values()):
                owners = dependent["metadata"].get("ownerReferences") or []
                if any(owner.get("uid") == uid for owner in owners):
                    self.delete(dependent_resource, dependent["metadata"]["name"])
        if resource == "pods":
            self._retry_job_pods()
        return obj

    def _retry_job_pods(self) -> None:
        """The Job controller retries the pod of a Job the quota refused, as room frees up."""
        for job in list(self.store["jobs"].values()):
            if job["metadata"]["name"] in self._refused_jobs:
                self._start_job_pod(job)

    def names(self, resource: str) -> list[str]:
        return sorted(name for _, name in self.store[resource])

    def get(self, resource: str, name: str) -> Obj | None:
        return self.store[resource].get((self.namespace, name))

    # --- scenario: the job controller, the kubelet and Nextflow -------------------------------

    def _start_job_pod(self, job: Obj) -> None:
        template = job["spec"]["template"]
        job_name = job["metadata"]["name"]
        pod = {
            "metadata": {
                "name": f"{job_name}-{secrets.token_hex(3)[:5]}",
                "namespace": job["metadata"]["namespace"],
                "labels": {
                    **(template.get("metadata", {}).get("labels") or {}),
                    "batch.kubernetes.io/job-name": job_name,
                    "job-name": job_name,
                    "controller-uid": job["metadata"]["uid"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }
        try:
            self._admit_pod({**pod, "metadata": {**pod["metadata"], "namespace": self.namespace}})
        except Refused as refusal:
            self._refused_jobs.add(job_name)
            self.create(
                "events",
                {
                    "metadata": {"name": f"{job_name}.{secrets.token_hex(8)}"},
                    "involvedObject": {
                        "kind": "Job",
                        "name": job_name,
                        "namespace": job["metadata"]["namespace"],
                        "uid": job["metadata"]["uid"],
                    },
                    "reason": "FailedCreate",
                    "type": "Warning",
                    "message": f"Error creating: {refusal}",
                },
            )
            return
        self._refused_jobs.discard(job_name)
        self.update("jobs", job_name, lambda j: j.setdefault("status", {}).update(active=1))
        self.create("pods", pod)

    def controller_pod(self, run_id: str) -> str:
        for (_, name), pod in self.store["pods"].items():
            labels = pod["metadata"].get("labels") or {}
            if labels.get("job-name") == f"nextflow-{run_id}":
                return name
        raise KeyError(run_id)

    def set_pod_phase(self, name: str, phase: str) -> None:
        pod = self.get("pods", name)
        if pod is not None and "nextflow.io/runName" in (pod["metadata"].get("labels") or {}):
            # Nextflow learns a task pod's state by polling its status.
            assert self.authorize(RUNNER_USER, "get", "pods/status", self.namespace) is None
        self.update("pods", name, lambda pod: pod["status"].update(phase=phase))
        if phase in TERMINAL:
            self._retry_job_pods()

    def add_task_pod(self, run_id: str, process: str, index: int | None, cpu: str = "1") -> str:
        """A task pod as Nextflow creates it (labels sanitized like Nextflow's, plus the
        `k8s.pod` labels of the generated config), Pending. Raises `Refused`."""
        denied = self.authorize(RUNNER_USER, "create", "pods", self.namespace)
        if denied is not None:
            raise Refused(denied)
        name = f"nf-{secrets.token_hex(8)}"
        task_label = process if index is None else f"{process}_{index}"
        pod = {
            "metadata": {
                "name": name,
                "labels": {
                    "nextflow.io/app": "nextflow",
                    "nextflow.io/runName": run_id,
                    "nextflow.io/taskName": task_label,
                    "nextflow.io/processName": process,
                    "nextflow.io/sessionId": self.session_id,
                    "app.kubernetes.io/component": "task",
                    "app.kubernetes.io/managed-by": "nextflow-k8s-service",
                    "nextflow-k8s-service/run-id": run_id,
                },
            },
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": name,
                        "image": "py",
                        "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}},
                    }
                ],
            },
            "status": {"phase": "Pending"},
        }
        self.create("pods", pod)
        return name

    def run_task_container(self, name: str, *, exit_code: int | None = None) -> None:
        """The kubelet's view of a task pod: started now (`exit_code` None: phase Running,
        `state.running.startedAt`), or finished now with `exit_code` (phase Succeeded / Failed,
        `state.terminated`). Like the API, times are whole seconds."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def mutate(pod: Obj) -> None:
            status = pod["status"]
            container = pod["spec"]["containers"][0]["name"]
            previous = (status.get("containerStatuses") or [{}])[0].get("state") or {}
            started = (previous.get("running") or {}).get("startedAt", now)
            if exit_code is None:
                status["phase"], state = "Running", {"running": {"startedAt": now}}
            else:
                status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
                state = {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "startedAt": started,
                        "finishedAt": now,
                    }
                }
            status["containerStatuses"] = [{"name": container, "state": state}]

        self.update("pods", name, mutate)

    def append_log(self, pod: str, *messages: str, same_timestamp: bool = False) -> None:
        lines = self.logs.setdefault(pod, [])
        nanos = max(time.time_ns(), self._last_log_nanos + 1)
        for message in messages:
            lines.append((nanos, message))
            self._last_log_nanos = nanos
            if not same_timestamp:
                nanos += 1_000
        for reader in self._log_readers:
            if reader.pod == pod:
                reader.wake.set()

    def set_job_conditions(self, name: str, *conditions: tuple[str, str, str]) -> None:
        """Append True conditions (type, reason, message) to the Job's status."""

        def mutate(job: Obj) -> None:
            status = job.setdefault("status", {})
            for kind, reason, message in conditions:
                status.setdefault("conditions", []).append(
                    {"type": kind, "status": "True", "reason": reason, "message": message}
                )
                if kind == "Complete":
                    status.update(active=0, succeeded=1)
                if kind == "Failed":
                    status.update(active=0, failed=1)

        self.update("jobs", name, mutate)

    def finish_one_batch_run(self, run_id: str) -> None:
        """Play the rest of a 1-batch run to success, as Nextflow and Kubernetes would: its three
        task pods succeed (and are cleaned up), then the controller, then the Job."""
        for process, index in (("GENERATE", 1), ("ANALYZE", 1), ("REPORT", None)):
            pod = self.add_task_pod(run_id, process, index)
            self.set_pod_phase(pod, "Succeeded")
            self.delete("pods", pod)
        self.set_pod_phase(self.controller_pod(run_id), "Succeeded")
        job = f"nextflow-{run_id}"
        self.set_job_conditions(job, ("SuccessCriteriaMet", "CompletionsReached", ""))
        self.set_job_conditions(job, ("Complete", "CompletionsReached", ""))

    # --- HTTP handlers ------------------------------------------------------------------------

    def _error(self, code: int, message: str) -> web.Response:
        body = status_body(code, _REASONS.get(code, "Unknown"), message)
        return web.json_response(body, status=code)

    def _fault_response(self, verb: str, resource: str) -> web.Response | None:
        fault = self._take_fault(verb, resource)
        if fault is None:
            return None
        return self._error(fault.status, fault.message)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        resource = request.match_info["resource"]
        namespace = request.match_info["ns"]
        query = request.query
        watch = query.get("watch", "").lower() in ("true", "1")
        verb = {"GET": "watch" if watch else "list", "POST": "create"}.get(
            request.method, "deletecollection"
        )
        self.calls.append((verb, _GROUPS.get(resource, "?"), resource))
        if resource not in RESOURCES:
            return self._error(404, f"the server could not find resource {resource}")
        denied = self.authorize(self._user(request), verb, resource, namespace)
        if denied is not None:
            return self._error(403, denied)
        faulted = self._fault_response(verb, resource)
        if faulted is not None:
            return faulted
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        if verb == "create":
            body = await request.json()
            try:
                created = self.create(resource, body, namespace)
            except KeyError:
                name = body["metadata"]["name"]
                return self._error(409, f'{resource} "{name}" already exists')
            except Refused as refusal:
                return self._error(403, str(refusal))
            return web.json_response(created, status=201)
        if verb == "watch":
            return await self._watch(request, resource, namespace, labels, fields)
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self.store[resource].items())
            if ns == namespace and matches(obj, labels, fields)
        ]
        if verb == "deletecollection":
            grace = query.get("gracePeriodSeconds")
            for obj in items:
                self.delete(
                    resource,
                    obj["metadata"]["name"],
                    namespace=namespace,
                    grace_seconds=float(grace) if grace is not None else None,
                )
        limit = int(query.get("limit") or 0)
        return web.json_response(
            {
                "kind": f"{_KINDS[resource]}List",
                "apiVersion": _API_VERSIONS[resource],
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items[:limit] if limit else items,
            }
        )

    async def _item(self, request: web.Request) -> web.Response:
        resource, name = request.match_info["resource"], request.match_info["name"]
        namespace = request.match_info["ns"]
        verb = {"GET": "get", "DELETE": "delete"}.get(request.method, request.method.lower())
        self.calls.append((verb, _GROUPS.get(resource, "?"), resource))
        denied = self.authorize(self._user(request), verb, resource, namespace)
        if denied is not None:
            return self._error(403, denied)
        faulted = self._fault_response(verb, resource)
        if faulted is not None:
            return faulted
        obj = self.store.get(resource, {}).get((namespace, name))
        if obj is None:
            return self._error(404, f'{resource} "{name}" not found')
        if verb == "delete":
            if request.query.get("propagationPolicy") == "Orphan":
                obj["metadata"]["ownerReferences"] = []
            self.delete(resource, name, namespace=namespace)
            return web.json_response({"kind": "Status", "status": "Success", "metadata": {}})
        return web.json_response(obj)

    async def _watch(
        self,
        request: web.Request,
        resource: str,
        namespace: str,
        labels: str | None,
        fields: str | None,
    ) -> web.StreamResponse:
        since = request.query.get("resourceVersion") or ""
        timeout = float(request.query.get("timeoutSeconds") or 30)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(event: Obj) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if since and int(since) < self.compacted[resource]:
            await send({"type": "ERROR", "object": status_body(410, "Expired", "too old")})
            await _close(response)
            return response
        watcher = _Watcher(resource, namespace, labels, fields)
        self._watchers.add(watcher)
        self._changed()
        # Replay synchronously with the registration: no event is missed or repeated.
        if since:
            backlog = [
                {"type": kind, "object": obj}
                for rv, kind, obj in self.history[resource]
                if rv > int(since) and obj["metadata"]["namespace"] == namespace
                if matches(obj, labels, fields)
            ]
        else:
            backlog = [
                {"type": "ADDED", "object": copy.deepcopy(obj)}
                for (ns, _), obj in self.store[resource].items()
                if ns == namespace and matches(obj, labels, fields)
            ]
        stalled = False
        try:
            for event in backlog:
                await send(event)
            async with asyncio.timeout(timeout):
                while True:
                    event = await watcher.queue.get()
                    if event is None:
                        break
                    if event is _DROP:
                        assert request.transport is not None
                        request.transport.close()
                        return response
                    if event is _STALL:
                        stalled = True
                        break
                    await send(event)
            if stalled:
                # Silent until the client hangs up (which cancels this handler) or shutdown.
                await self._stopping.wait()
                return response
        except TimeoutError:
            pass
        except (ConnectionError, RuntimeError):
            return response
        finally:
            self._watchers.discard(watcher)
            await asyncio.shield(self._stream_ended())
        await _close(response)
        return response

    async def _pod_log(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.calls.append(("get", "", "pods/log"))
        denied = self.authorize(self._user(request), "get", "pods/log", request.match_info["ns"])
        if denied is not None:
            return self._error(403, denied)
        faulted = self._fault_response("get", "pods/log")
        if faulted is not None:
            return faulted
        pod = self.get("pods", name)
        if pod is None:
            return self._error(404, f'pods "{name}" not found')
        container = request.query.get("container") or pod["spec"]["containers"][0]["name"]
        init = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if container in init:
            # An init container's log (no follow needed: it has ended in these scenarios).
            lines = [m for _, m in self.logs.get(f"{name}:{container}", [])]
            tail = int(request.query.get("tailLines") or 0)
            text = "".join(f"{m}\n" for m in (lines[-tail:] if tail else lines))
            return web.Response(text=text, content_type="text/plain")
        if pod["status"]["phase"] == "Pending":
            return self._error(
                400,
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
            )
        follow = request.query.get("follow", "").lower() in ("true", "1")
        stamps = request.query.get("timestamps", "").lower() in ("true", "1")
        since = request.query.get("sinceSeconds")
        cutoff = time.time_ns() - int(since) * 1_000_000_000 if since else 0
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        reader = _LogReader(name)
        self._log_readers.add(reader)
        sent = 0
        try:
            while True:
                reader.wake.clear()
                lines = self.logs.get(name, [])
                for nanos, message in lines[sent:]:
                    sent += 1
                    if nanos < cutoff:
                        continue
                    prefix = f"{rfc3339nano(nanos)} " if stamps else ""
                    await response.write(f"{prefix}{message}\n".encode())
                current = self.get("pods", name)
                finished = current is None or current["status"]["phase"] in ("Succeeded", "Failed")
                if not follow or finished:
                    break
                await reader.wake.wait()
                if reader.dropped:
                    assert request.transport is not None
                    request.transport.close()
                    return response
        except (ConnectionError, RuntimeError):
            return response
        finally:
            self._log_readers.discard(reader)
            await asyncio.shield(self._stream_ended())
        await _close(response)
        return response
