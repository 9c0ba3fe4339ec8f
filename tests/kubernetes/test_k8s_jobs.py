"""The pure builders of the controller Job and the per-run ConfigMap."""

from __future__ import annotations

import kubernetes_validate
import pytest

from nextflow_k8s_service.config import Settings, load_settings
from nextflow_k8s_service.errors import ConfigurationError
from nextflow_k8s_service.kubernetes import jobs
from nextflow_k8s_service.run_events import RunSpec
from tests.conftest import run_spec

RUN = "r0123456789a"
LABELS = {
    "app.kubernetes.io/name": "nextflow",
    "app.kubernetes.io/instance": f"nextflow-{RUN}",
    "app.kubernetes.io/version": "25.04.8",
    "app.kubernetes.io/component": "controller",
    "app.kubernetes.io/part-of": "nextflow-k8s-service",
    "app.kubernetes.io/managed-by": "nextflow-k8s-service",
    "nextflow-k8s-service/run-id": RUN,
}
NO_ESCALATION = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}
COPY_SCRIPT = (
    "set -eu\n"
    f'dest="/workspace/runs/{RUN}/workflow"\n'
    f'mkdir -p "$dest/bin" "/workspace/work/{RUN}" "/workspace/results/{RUN}"\n'
    'cp -L /etc/demo-workflow/demo.nf /etc/demo-workflow/nextflow.config "$dest/"\n'
    'cp -L /etc/demo-workflow/bin/* "$dest/bin/"\n'
    'chmod 0755 "$dest"/bin/*\n'
)


@pytest.fixture
def settings() -> Settings:
    return load_settings(executor="kubernetes", run_timeout_seconds=1800)


@pytest.fixture
def spec() -> RunSpec:
    return run_spec(3, run_id=RUN, rows_per_batch=100, generate_seconds=5, analyze_seconds=2.5)


def test_job_is_exactly_the_expected_object(settings: Settings, spec: RunSpec) -> None:
    assert jobs.build_job(settings, spec) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"nextflow-{RUN}", "namespace": "nextflow", "labels": LABELS},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "nextflow-runner",
                    "terminationGracePeriodSeconds": 120,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "fsGroup": 1000,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "stage-workflow",
                            "image": "python:3.12-slim",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", COPY_SCRIPT],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "100m", "memory": "64Mi"},
                            },
                            "securityContext": NO_ESCALATION,
                            "volumeMounts": [
                                {"name": "workspace", "mountPath": "/workspace"},
                                {
                                    "name": "workflow",
                                    "mountPath": "/etc/demo-workflow",
                                    "readOnly": True,
                                },
                            ],
                        }
                    ],
                    "containers": [
                        {
                            "name": "nextflow",
                            "image": "nextflow/nextflow:25.04.8",
                            "imagePullPolicy": "IfNotPresent",
                            "command": [
                                "nextflow",
                                "run",
                                f"/workspace/runs/{RUN}/workflow/demo.nf",
                                "-name",
                                RUN,
                                "-c",
                                "/etc/nextflow-run/nextflow.config",
                                "-ansi-log",
                                "false",
                            ],
                            "workingDir": f"/workspace/runs/{RUN}",
                            # The baked framework, no update check, Nextflow's own files on
                            # the pod-local scratch volume.
                            "env": [
                                {"name": "NXF_VER", "value": "25.04.8"},
                                {"name": "NXF_DIST", "value": "/.nextflow/framework"},
                                {"name": "NXF_HOME", "value": "/tmp/nextflow-home"},
                                {"name": "NXF_CACHE_DIR", "value": "/tmp/nextflow-cache"},
                                {"name": "NXF_DISABLE_CHECK_LATEST", "value": "true"},
                                {"name": "NXF_ANSI_LOG", "value": "false"},
                                {"name": "NXF_OPTS", "value": "-Xms256m -Xmx3072m"},
                                {"name": "HOME", "value": "/tmp"},
                            ],
                            "resources": {
                                "requests": {"cpu": "2", "memory": "4Gi"},
                                "limits": {"cpu": "2", "memory": "4Gi"},
                            },
                            "securityContext": NO_ESCALATION,
                            "volumeMounts": [
                                {"name": "workspace", "mountPath": "/workspace"},
                                {
                                    "name": "run-config",
                                    "mountPath": "/etc/nextflow-run",
                                    "readOnly": True,
                                },
                                {"name": "scratch", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "workspace",
                            "persistentVolumeClaim": {"claimName": "nextflow-workspace"},
                        },
                        {
                            "name": "workflow",
                            "configMap": {
                                "name": "demo-workflow",
                                "items": [
                                    {"key": "demo.nf", "path": "demo.nf"},
                                    {"key": "nextflow.config", "path": "nextflow.config"},
                                    {"key": "generate.py", "path": "bin/generate.py"},
                                    {"key": "analyze.py", "path": "bin/analyze.py"},
                                    {"key": "report.py", "path": "bin/report.py"},
                                ],
                            },
                        },
                        {"name": "run-config", "configMap": {"name": f"nextflow-{RUN}-config"}},
                        {"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}},
                    ],
                },
            },
        },
    }


def test_config_map_carries_the_config_and_an_owner_reference(
    settings: Settings, spec: RunSpec
) -> None:
    owner = {"metadata": {"name": f"nextflow-{RUN}", "uid": "0b5c-uid"}}
    config_map = jobs.build_config_map(settings, spec, owner=owner)
    assert config_map == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"nextflow-{RUN}-config",
            "namespace": "nextflow",
            "labels": {**LABELS, "app.kubernetes.io/component": "config"},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": f"nextflow-{RUN}",
                    "uid": "0b5c-uid",
                }
            ],
        },
        "data": {"nextflow.config": jobs.nextflow_config(settings, spec)},
    }


def test_nextflow_config_is_the_expected_text(settings: Settings, spec: RunSpec) -> None:
    task_labels = {**LABELS, "app.kubernetes.io/component": "task"}
    pod_lines = ",\n".join(f"        [label: '{k}', value: '{v}']" for k, v in task_labels.items())
    assert jobs.nextflow_config(settings, spec) == (
        f"// Generated by nextflow-k8s-service for run {RUN}.\n"
        f"workDir = '/workspace/work/{RUN}'\n"
        "\n"
        "params {\n"
        f"    run_id = '{RUN}'\n"
        "    batches = 3\n"
        "    max_batches = 12\n"
        "    rows = 100\n"
        "    generate_seconds = 5\n"
        "    analyze_seconds = 2.5\n"
        "    results_dir = '/workspace/results'\n"
        "    worker_image = 'python:3.12-slim'\n"
        "}\n"
        "\n"
        "process {\n"
        "    executor = 'k8s'\n"
        "    container = 'python:3.12-slim'\n"
        "    cpus = 1\n"
        "    memory = '3814 MB'\n"
        "}\n"
        "\n"
        "k8s {\n"
        "    namespace = 'nextflow'\n"
        "    serviceAccount = 'nextflow-runner'\n"
        "    computeResourceType = 'Pod'\n"
        "    storageClaimName = 'nextflow-workspace'\n"
        "    storageMountPath = '/workspace'\n"
        "    cleanup = true\n"
        "    cpuLimits = true\n"
        "    securityContext = [runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, "
        "fsGroupChangePolicy: 'OnRootMismatch', runAsNonRoot: true]\n"
        f"    pod = [\n{pod_lines},\n        [automountServiceAccountToken: false]\n    ]\n"
        "}\n"
    )


def test_offline_controller_uses_the_baked_plugins(spec: RunSpec) -> None:
    settings = load_settings(nextflow_plugins_dir="/opt/nextflow/plugins", nextflow_offline=True)
    (container,) = jobs.build_job(settings, spec)["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert env["NXF_PLUGINS_DIR"] == "/opt/nextflow/plugins"
    assert env["NXF_OFFLINE"] == "true"
    assert env["NXF_DIST"] == "/.nextflow/framework"
    assert not env["NXF_HOME"].startswith(jobs.WORKSPACE_MOUNT)
    assert not env["NXF_CACHE_DIR"].startswith(jobs.WORKSPACE_MOUNT)


def test_offline_without_baked_plugins_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="NEXTFLOW_PLUGINS_DIR"):
        load_settings(nextflow_offline=True)


def test_groovy_strings_are_escaped(spec: RunSpec) -> None:
    settings = load_settings(worker_image="registry/it's:1", nextflow_namespace="ns")
    assert "container = 'registry/it\\'s:1'" in jobs.nextflow_config(settings, spec)


@pytest.mark.parametrize("which", ["job", "config_map"])
def test_objects_are_valid_kubernetes_1_31(which: str, settings: Settings, spec: RunSpec) -> None:
    owner = {"metadata": {"name": f"nextflow-{RUN}", "uid": "0b5c-uid"}}
    obj = (
        jobs.build_job(settings, spec)
        if which == "job"
        else jobs.build_config_map(settings, spec, owner=owner)
    )
    kubernetes_validate.validate(obj, "1.31", strict=True)


def test_validation_would_catch_a_typo(settings: Settings, spec: RunSpec) -> None:
    job = jobs.build_job(settings, spec)
    job["spec"]["backofLimit"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.31", strict=True)


def test_selectors_and_names() -> None:
    assert jobs.task_pods_selector(RUN) == f"nextflow.io/runName={RUN}"
    assert jobs.controller_pod_selector(RUN) == (
        f"nextflow-k8s-service/run-id={RUN},app.kubernetes.io/component=controller"
    )
    assert len(jobs.job_name(RUN)) <= 63 and len(jobs.config_map_name(RUN)) <= 63
