"""The tasks of one run as its monitor knows them (pure, no I/O).

Which pod speaks for each task (the newest, when Nextflow retried it), the last transition
emitted per task (a transition is emitted once), the first image failure per task (for the
run's failure cause), and what the DAG and the run's end imply for tasks whose pods were
never seen to finish. Every method returns the transitions to emit, in order.
"""

from __future__ import annotations

from nextflow_k8s_service.kubernetes.diagnosis import image_failure
from nextflow_k8s_service.kubernetes.task_records import pod_task_change
from nextflow_k8s_service.kubernetes.watch import WatchEvent, pod_task
from nextflow_k8s_service.models import RunStatus, TaskState
from nextflow_k8s_service.run_events import TaskChanged

Task = tuple[str, int | None]


class RunTasks:
    """The task states of a run of `batch_count` batches; see the module docstring."""

    def __init__(self, batch_count: int) -> None:
        self._batches = range(1, batch_count + 1)
        self._states: dict[Task, TaskState] = {}
        self._changes: dict[Task, TaskChanged] = {}
        self._pods: dict[Task, str] = {}
        #: Why a task's pod cannot run (its image), first seen per task.
        self.failures: dict[Task, str] = {}

    def set(
        self, task: Task, state: TaskState, change: TaskChanged | None = None
    ) -> list[TaskChanged]:
        """The task's transition to `state`, or to what its pod shows (`change`, which also
        carries times and exit code), when that differs from the last one emitted."""
        if change is None and self._states.get(task) == state:
            return []
        event = change or TaskChanged(task[0], task[1], state)
        if self._changes.get(task) == event:
            return []
        self._states[task] = state
        self._changes[task] = event
        return [event]

    def speaking_for(self, event: WatchEvent) -> Task | None:
        """The task whose pod `event` is about, if that pod speaks for it (the newest pod of a
        retried task does); None for other pods."""
        task = pod_task(event.obj)
        if task is None:
            return None
        metadata = event.obj.get("metadata") or {}
        uid = str(metadata.get("uid") or metadata.get("name"))
        if event.type != "DELETED" and task not in self._pods:
            self._pods[task] = uid
        elif event.type == "ADDED" and self._pods.get(task) != uid:
            self._pods[task] = uid  # a retry of the task: the newest pod speaks for it
        return task if self._pods.get(task, uid) == uid else None

    def pod_changed(self, task: Task, event: WatchEvent, *, cancelling: bool) -> list[TaskChanged]:
        """What the task's pod (`speaking_for` it) shows now. While the run is cancelled, a
        deleted pod says nothing (the cancel reports the tasks)."""
        deleted = event.type == "DELETED"
        image = image_failure(event.obj)
        if image is not None:
            self.failures.setdefault(task, image)
        change = pod_task_change(event.obj, deleted=deleted, missed=event.missed)
        if change is None or (deleted and cancelling):
            return []
        return self.set(task, change.state, change)

    def infer_finished(self) -> list[TaskChanged]:
        """After a restart, the tasks whose pods `k8s.cleanup` already removed: the DAG tells,
        ANALYZE (i) exists only after GENERATE (i) succeeded, REPORT only after every ANALYZE
        succeeded."""
        seen = dict(self._states)
        if any(process == "REPORT" for process, _ in seen):
            finished = [("GENERATE", i) for i in self._batches]
            finished += [("ANALYZE", i) for i in self._batches]
        else:
            finished = [("GENERATE", i) for p, i in seen if p == "ANALYZE" and i is not None]
        events: list[TaskChanged] = []
        for task in finished:
            if task not in seen:
                events += self.set(task, TaskState.SUCCEEDED)
        return events

    def settle(self, status: RunStatus) -> list[TaskChanged]:
        """What the run's end `status` implies for the tasks not seen to finish."""
        events: list[TaskChanged] = []
        if status is RunStatus.SUCCEEDED:
            # The pipeline completed, so every task did (pods deleted unseen included).
            for process in ("GENERATE", "ANALYZE"):
                for index in self._batches:
                    events += self.set((process, index), TaskState.SUCCEEDED)
            events += self.set(("REPORT", None), TaskState.SUCCEEDED)
            return events
        # The run is over: a task still pending or running will not finish.
        unfinished = (TaskState.PENDING, TaskState.RUNNING)
        for task, state in list(self._states.items()):
            if state in unfinished:
                events += self.set(task, TaskState.FAILED)
        return events
