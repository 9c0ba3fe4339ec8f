"""The Kubernetes API calls this service makes, as RBAC rules: the single source of truth.

`SERVICE_PERMISSIONS` is what the service's own account needs in the run namespace; the
Role in `k8s/` must grant exactly this (tests compare both with the calls the executor makes
against the API fake). `RUNNER_PERMISSIONS` is what Nextflow's k8s executor (the controller
Job, account `nextflow-runner`) needs to create and follow its task pods.
"""

from __future__ import annotations

# (apiGroup, resource) -> verbs
Permissions = dict[tuple[str, str], frozenset[str]]

SERVICE_PERMISSIONS: Permissions = {
    ("batch", "jobs"): frozenset({"create", "get", "list", "watch", "delete"}),
    # The per-run ConfigMap is owned by its Job: garbage collection deletes it.
    ("", "configmaps"): frozenset({"create"}),
    ("", "pods"): frozenset({"list", "watch", "deletecollection"}),
    ("", "pods/log"): frozenset({"get"}),
    # A Job whose pod is refused at admission (ResourceQuota) has no pod and no condition:
    # its FailedCreate event is the only trace.
    ("", "events"): frozenset({"list"}),
}

# Nextflow's K8sClient with `k8s.computeResourceType = 'Pod'` (nf-k8s plugin): POST and DELETE
# of task pods, GET .../pods/<name>/status to poll them, GET .../pods/<name>/log to save the log
# of a failed task. (Job-type tasks would need batch/jobs and pods list instead.)
RUNNER_PERMISSIONS: Permissions = {
    ("", "pods"): frozenset({"create", "delete"}),
    ("", "pods/status"): frozenset({"get"}),
    ("", "pods/log"): frozenset({"get"}),
}
