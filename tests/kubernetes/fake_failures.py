"""Scenarios of the API fake in which the run goes wrong, as the kubelet, the Job controller and
nf-k8s 1.0 would make it go: a task pod refused at admission (Nextflow aborts), a controller that
exits (OOM-killed, or with an error), a failed init container, an image that cannot be pulled.
Mixed into `FakeKubernetes`, whose store and scenario methods they drive."""

from __future__ import annotations

import json
from typing import Any

from tests.kubernetes.fake_policy import RUNNER_USER, Refused

Obj = dict[str, Any]


class FailureScenarios:
    """Methods of `FakeKubernetes` (see there); they use its store and scenario methods."""

    namespace: str
    # Provided by FakeKubernetes.
    add_task_pod: Any
    controller_pod: Any
    append_log: Any
    update: Any
    get: Any
    set_job_conditions: Any
    delete: Any
    authorize: Any

    def nextflow_cleanup(self, pod: str) -> None:
        """`k8s.cleanup`: Nextflow deletes a succeeded task pod, with the runner's token."""
        assert self.authorize(RUNNER_USER, "delete", "pods", self.namespace) is None
        self.delete("pods", pod)

    def nextflow_submit(self, run_id: str, process: str, index: int | None) -> str | None:
        """Nextflow submits a task; a refused pod (403) aborts the run as nf-k8s 1.0 does: the
        error in the controller's log, the controller exits 1, the Job fails. None then."""
        try:
            return self.add_task_pod(run_id, process, index)
        except Refused as refusal:
            body = json.dumps(
                {
                    "kind": "Status",
                    "status": "Failure",
                    "reason": "Forbidden",
                    "code": 403,
                    "message": str(refusal),
                },
                indent=2,
            )
            controller = self.controller_pod(run_id)
            self.append_log(
                controller,
                f"ERROR ~ Request POST /api/v1/namespaces/{self.namespace}/pods returned an "
                "error code=403",
                "",
                *body.splitlines(),
            )
            self.end_controller(run_id, exit_code=1, reason="Error")
            return None

    def end_controller(self, run_id: str, *, exit_code: int, reason: str) -> None:
        """The controller container terminates; a non-zero exit fails the Job (backoffLimit 0)."""
        controller = self.controller_pod(run_id)
        terminated = {"exitCode": exit_code, "reason": reason}

        def mutate(pod: Obj) -> None:
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            pod["status"]["containerStatuses"] = [
                {
                    "name": pod["spec"]["containers"][0]["name"],
                    "image": pod["spec"]["containers"][0].get("image"),
                    "state": {"terminated": terminated},
                }
            ]

        self.update("pods", controller, mutate)
        self._fail_or_complete(run_id, exit_code)

    def fail_init_container(self, run_id: str, *lines: str, exit_code: int = 1) -> None:
        """The controller's init container fails (writing `lines`); so does the Job."""
        controller = self.controller_pod(run_id)
        pod = self.get("pods", controller)
        assert pod is not None
        init = pod["spec"]["initContainers"][0]["name"]
        self.append_log(f"{controller}:{init}", *lines)

        def mutate(pod: Obj) -> None:
            pod["status"]["phase"] = "Failed"
            pod["status"]["initContainerStatuses"] = [
                {
                    "name": init,
                    "image": pod["spec"]["initContainers"][0].get("image"),
                    "state": {"terminated": {"exitCode": exit_code, "reason": "Error"}},
                }
            ]

        self.update("pods", controller, mutate)
        self._fail_or_complete(run_id, exit_code)

    def _fail_or_complete(self, run_id: str, exit_code: int) -> None:
        job = f"nextflow-{run_id}"
        if exit_code == 0:
            self.set_job_conditions(job, ("SuccessCriteriaMet", "CompletionsReached", ""))
            self.set_job_conditions(job, ("Complete", "CompletionsReached", ""))
            return
        limit = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        self.set_job_conditions(job, ("FailureTarget", *limit))
        self.set_job_conditions(job, ("Failed", *limit))

    def set_image_pull_failure(self, pod: str, reason: str = "ImagePullBackOff") -> None:
        """The kubelet cannot pull the pod's image: it stays Pending, waiting."""

        def mutate(obj: Obj) -> None:
            container = obj["spec"]["containers"][0]
            image = container.get("image")
            obj["status"]["containerStatuses"] = [
                {
                    "name": container["name"],
                    "image": image,
                    "state": {
                        "waiting": {
                            "reason": reason,
                            "message": f'Back-off pulling image "{image}"',
                        }
                    },
                }
            ]

        self.update("pods", pod, mutate)
