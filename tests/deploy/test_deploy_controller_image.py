"""controller.Dockerfile (the offline controller image) and k8s/extras/workspace-owner.yaml agree
with the Job the service builds."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from nextflow_k8s_service.config import load_settings
from nextflow_k8s_service.executors.base import RunSpec
from nextflow_k8s_service.kubernetes import jobs

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "controller.Dockerfile"
# The nf-k8s version each Nextflow release asks for (plugins/nf-k8s MANIFEST.MF at its tag);
# offline, Nextflow accepts exactly that version from NXF_PLUGINS_DIR.
NF_K8S_OF = {"25.04.7": "1.0.0", "25.04.8": "1.0.1"}


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def _args() -> dict[str, str]:
    return dict(rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG")


def _env() -> dict[str, str]:
    (env,) = [rest for keyword, rest in _instructions() if keyword == "ENV"]
    return dict(pair.split("=", 1) for pair in env.split())


def test_image_bakes_the_plugin_the_pinned_nextflow_asks_for() -> None:
    settings = load_settings()
    args = _args()
    assert args["NEXTFLOW_VERSION"] == settings.nextflow_version
    assert args["NF_K8S_VERSION"] == NF_K8S_OF[settings.nextflow_version]
    froms = [rest for keyword, rest in _instructions() if keyword == "FROM"]
    assert froms == ["nextflow/nextflow:${NEXTFLOW_VERSION}"]
    assert settings.nextflow_image == f"nextflow/nextflow:{settings.nextflow_version}"
    (run,) = [rest for keyword, rest in _instructions() if keyword == "RUN"]
    assert 'nextflow plugin install "nf-k8s@${NF_K8S_VERSION}"' in run
    # The Job runs as a non-root user: the plugins and the framework must be readable.
    assert jobs.IMAGE_FRAMEWORK_DIR in run and "a+rX" in run


def test_offline_settings_point_the_job_at_the_baked_plugins() -> None:
    plugins = _env()["NXF_PLUGINS_DIR"]
    settings = load_settings(nextflow_plugins_dir=plugins, nextflow_offline=True)
    job = jobs.build_job(settings, RunSpec("r0123456789a", 1, 1, 0, 0))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert env["NXF_PLUGINS_DIR"] == plugins == "/opt/nextflow/plugins"
    assert env["NXF_OFFLINE"] == "true"
    assert env["NXF_DIST"] == jobs.IMAGE_FRAMEWORK_DIR
    assert env["NXF_DISABLE_CHECK_LATEST"] == "true"


def test_workspace_owner_job_hands_the_volume_to_the_run_user() -> None:
    job = yaml.safe_load((REPO / "k8s" / "extras" / "workspace-owner.yaml").read_text())
    kubernetes_validate.validate(job, "1.31.0", strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (
        f"chown {jobs.RUN_AS_UID}:{jobs.RUN_AS_UID} {jobs.WORKSPACE_MOUNT}"
        in (container["command"][-1])
    )
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == load_settings().workspace_pvc
    assert container["securityContext"]["capabilities"]["add"] == ["CHOWN", "FOWNER"]
