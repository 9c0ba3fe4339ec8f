"""The kustomize manifests in k8s/: valid for Kubernetes 1.31, secure, and consistent with the code.

Rendered with `kubectl kustomize` when kubectl is installed, else by `kustomize_render`'s
pure-Python renderer; with kubectl present, both renderings must agree.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from kustomize_render import (
    Obj,
    kubectl_path,
    render,
    render_python,
    render_with_kubectl,
    split_image,
)

from nextflow_k8s_service.config import Settings, parse_cpu, parse_memory_bytes
from nextflow_k8s_service.executors.base import RunSpec
from nextflow_k8s_service.kubernetes import jobs
from nextflow_k8s_service.kubernetes.permissions import (
    RUNNER_PERMISSIONS,
    SERVICE_PERMISSIONS,
    Permissions,
)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
WORKFLOWS = REPO / "workflows"
VARIANTS = {"base": K8S, "redis": K8S / "overlays" / "redis"}
KUBERNETES_VERSION = "1.31.0"
NAMESPACE = "nextflow"
SERVICE = "nextflow-k8s-service"
GIB = 1024**3
# What the quota must leave free at the peak of a run of MAX_BATCH_COUNT.
MIN_FREE_CPU = 0.5
MIN_FREE_MEMORY = 2 * GIB
# Environment variables of the service container that are not Settings fields.
NON_SETTINGS_ENV = {"FORWARDED_ALLOW_IPS"}  # read by uvicorn itself
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


@cache
def _rendered(variant: str) -> tuple[Obj, ...]:
    return tuple(render(VARIANTS[variant]))


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(variant: str) -> tuple[Obj, ...]:
    return _rendered(variant)


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _index(objects: tuple[Obj, ...] | list[Obj]) -> dict[tuple[str, str, str, str], Obj]:
    index = {_key(obj): obj for obj in objects}
    assert len(index) == len(objects), "duplicate objects"
    return index


def _one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _service_container(objects: tuple[Obj, ...]) -> Obj:
    pod = _one(objects, "Deployment", SERVICE)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def _env(objects: tuple[Obj, ...]) -> dict[str, Obj]:
    entries = _service_container(objects)["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate env entries: {names}"
    return {entry["name"]: entry for entry in entries}


def _settings(objects: tuple[Obj, ...]) -> Settings:
    """The Settings the deployed service would build from its container's environment."""
    values: dict[str, Any] = {}
    for name, entry in _env(objects).items():
        if name in NON_SETTINGS_ENV:
            continue
        if "value" in entry:
            values[name.lower()] = entry["value"]
        elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            values[name.lower()] = _one(objects, "Deployment", SERVICE)["metadata"]["namespace"]
    # model_validate skips the settings sources: only the manifest's values and the defaults.
    return Settings.model_validate(values)


def _pods(objects: tuple[Obj, ...]) -> list[tuple[Obj, int]]:
    """(pod template spec, replicas) of every Deployment."""
    return [
        (o["spec"]["template"]["spec"], o["spec"].get("replicas", 1))
        for o in objects
        if o["kind"] == "Deployment"
    ]


# --- rendering ----------------------------------------------------------------------------


@pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not installed")
def test_python_renderer_agrees_with_kubectl(variant: str) -> None:
    kubectl = kubectl_path()
    assert kubectl is not None
    expected = _index(render_with_kubectl(VARIANTS[variant], kubectl))
    actual = _index(render_python(VARIANTS[variant]))
    assert sorted(actual) == sorted(expected)
    for key, obj in expected.items():
        assert actual[key] == obj, f"{key} differs"


@pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not installed")
def test_renderers_agree_on_an_image_overlay_as_in_the_readme(tmp_path: Path) -> None:
    kubectl = kubectl_path()
    assert kubectl is not None
    base = os.path.relpath(VARIANTS["redis"], tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {base}\n"
        "images:\n"
        "  - name: ghcr.io/example/nextflow-k8s-service\n"
        "    newName: registry.example.org/you/nextflow-k8s-service\n"
        "    newTag: 1.2.3\n"
    )
    expected = _index(render_with_kubectl(tmp_path, kubectl))
    assert _index(render_python(tmp_path)) == expected
    container = _service_container(tuple(expected.values()))
    assert container["image"] == "registry.example.org/you/nextflow-k8s-service:1.2.3"


def test_every_object_validates_strictly_for_kubernetes_1_31(objects: tuple[Obj, ...]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_base_contains_the_deployment_and_nothing_cluster_wide() -> None:
    objects = _rendered("base")
    kinds = Counter(o["kind"] for o in objects)
    assert kinds == {
        "Namespace": 1,
        "ServiceAccount": 2,
        "Role": 2,
        "RoleBinding": 2,
        "PersistentVolumeClaim": 1,
        "ResourceQuota": 1,
        "LimitRange": 1,
        "NetworkPolicy": 3,
        "Deployment": 1,
        "Service": 1,
        "ConfigMap": 1,
    }
    _one(objects, "Namespace", NAMESPACE)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, _key(obj)


def test_redis_overlay_adds_redis_and_a_second_replica() -> None:
    base, overlay = _index(_rendered("base")), _index(_rendered("redis"))
    added = {key[1:] for key in set(overlay) - set(base)}
    assert added == {
        ("Deployment", NAMESPACE, "redis"),
        ("Service", NAMESPACE, "redis"),
        ("NetworkPolicy", NAMESPACE, "redis"),
    }
    assert not set(base) - set(overlay)

    base_deploy = _one(_rendered("base"), "Deployment", SERVICE)
    deploy = _one(_rendered("redis"), "Deployment", SERVICE)
    assert base_deploy["spec"]["replicas"] == 1
    # Memory state: never two pods at once, not even during a rollout.
    assert base_deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert "REDIS_URL" not in _env(_rendered("base"))
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    # No surge: a rollout stays inside the quota.
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0

    redis_service = _one(_rendered("redis"), "Service", "redis")
    (port,) = redis_service["spec"]["ports"]
    assert _settings(_rendered("redis")).redis_url == f"redis://redis:{port['port']}/0"


def test_every_object_has_the_recommended_labels(objects: tuple[Obj, ...]) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert set(labels) >= RECOMMENDED_LABELS, _key(obj)
        assert labels["app.kubernetes.io/part-of"] == SERVICE
    for deploy in (o for o in objects if o["kind"] == "Deployment"):
        template_labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/part-of"} <= set(template_labels)
        selector = deploy["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template_labels.items()


# --- RBAC -----------------------------------------------------------------------------------


def _rules(role: Obj) -> Permissions:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), "no wildcards"
                    granted.setdefault((group, resource), set()).add(verb)
    return {key: frozenset(verbs) for key, verbs in granted.items()}


def _bound_account(objects: tuple[Obj, ...], role: str) -> str:
    bindings = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == role]
    assert len(bindings) == 1
    binding = bindings[0]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role,
    }
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount"
    assert subject["namespace"] == NAMESPACE
    _one(objects, "ServiceAccount", subject["name"])
    return str(subject["name"])


def test_service_role_grants_exactly_service_permissions(objects: tuple[Obj, ...]) -> None:
    assert _rules(_one(objects, "Role", SERVICE)) == SERVICE_PERMISSIONS
    account = _bound_account(objects, SERVICE)
    pod = _one(objects, "Deployment", SERVICE)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account


def test_runner_role_grants_exactly_runner_permissions(objects: tuple[Obj, ...]) -> None:
    role = _settings(objects).nextflow_service_account
    assert _rules(_one(objects, "Role", role)) == RUNNER_PERMISSIONS
    assert _bound_account(objects, role) == role


def test_runner_permissions_cover_nextflow_k8s_executor() -> None:
    # The calls of Nextflow's K8sClient (plugin nf-k8s) with computeResourceType = 'Pod':
    # podCreate POST pods, podDelete DELETE pods/<name>, podState GET pods/<name>/status,
    # podLog GET pods/<name>/log. (Job mode would need batch/jobs; kuberun would need
    # configmaps and persistentvolumeclaims; neither is used.)
    needed = {
        ("", "pods"): {"create", "delete"},
        ("", "pods/status"): {"get"},
        ("", "pods/log"): {"get"},
    }
    for key, verbs in needed.items():
        assert verbs <= RUNNER_PERMISSIONS.get(key, frozenset()), key


def test_no_cluster_scoped_rbac(objects: tuple[Obj, ...]) -> None:
    assert not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_tokens_are_mounted_only_where_the_api_is_called(objects: tuple[Obj, ...]) -> None:
    service_account = _one(objects, "ServiceAccount", SERVICE)
    assert service_account["automountServiceAccountToken"] is False
    for deploy in (o for o in objects if o["kind"] == "Deployment"):
        pod = deploy["spec"]["template"]["spec"]
        calls_api = deploy["metadata"]["name"] == SERVICE
        assert pod["automountServiceAccountToken"] is calls_api, deploy["metadata"]["name"]
        assert pod["enableServiceLinks"] is False


# --- the service Deployment ---------------------------------------------------------------


def test_pods_run_restricted(objects: tuple[Obj, ...]) -> None:
    for pod, _ in _pods(objects):
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert isinstance(context["runAsUser"], int)
        assert context["runAsUser"] > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["runAsNonRoot"] is True
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]


def test_service_probes_and_ports(objects: tuple[Obj, ...]) -> None:
    container = _service_container(objects)
    settings = _settings(objects)
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": settings.port, "protocol": "TCP"}
    assert settings.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}

    service = _one(objects, "Service", SERVICE)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    template = _one(objects, "Deployment", SERVICE)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template.items()


def test_writable_paths_and_workspace_volume(objects: tuple[Obj, ...]) -> None:
    settings = _settings(objects)
    pod = _one(objects, "Deployment", SERVICE)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in _service_container(objects)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    workspace = mounts[str(settings.workspace_dir)]
    assert workspace["readOnly"] is True
    claim = volumes[workspace["name"]]["persistentVolumeClaim"]
    assert claim["claimName"] == settings.workspace_pvc
    pvc = _one(objects, "PersistentVolumeClaim", settings.workspace_pvc)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # jobs.py mounts the same claim at the same path in the controller and the task pods.
    assert str(settings.workspace_dir) == jobs.WORKSPACE_MOUNT


def test_env_names_are_settings_fields(objects: tuple[Obj, ...]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    unknown = set(_env(objects)) - fields - NON_SETTINGS_ENV
    assert not unknown, f"not Settings fields: {sorted(unknown)}"


def test_env_configures_kubernetes_mode_against_these_manifests(objects: tuple[Obj, ...]) -> None:
    settings = _settings(objects)  # also proves every value parses
    assert settings.executor == "kubernetes"
    assert settings.nextflow_namespace == NAMESPACE
    assert str(settings.workflow_dir) == "/app/workflows"
    config_map = _one(objects, "ConfigMap", settings.workflow_configmap)
    assert config_map["metadata"]["namespace"] == settings.nextflow_namespace
    _one(objects, "ServiceAccount", settings.nextflow_service_account)
    _one(objects, "PersistentVolumeClaim", settings.workspace_pvc)
    # The Nextflow version the controller pins is the one of the controller image.
    assert split_image(settings.nextflow_image)[1] == settings.nextflow_version
    admin = _env(objects)["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert admin["optional"] is True


def _image_pinned(image: str) -> bool:
    name, tag, digest = split_image(image)
    return bool(name) and (digest is not None or (tag is not None and tag != "latest"))


def test_images_are_pinned(objects: tuple[Obj, ...]) -> None:
    settings = _settings(objects)
    images = [settings.nextflow_image, settings.worker_image]
    for pod, _ in _pods(objects):
        images += [c["image"] for c in pod["containers"] + pod.get("initContainers", [])]
        for container in pod["containers"]:
            assert container["imagePullPolicy"] == "IfNotPresent"
    for image in images:
        assert _image_pinned(image), image
    assert not _image_pinned("python")
    assert not _image_pinned("redis:latest")
    assert _image_pinned("registry.local:5000/app:1.2.3")
    assert not _image_pinned("registry.local:5000/app")


# --- quota ----------------------------------------------------------------------------------


def _quantity_cpu(value: str | int | float) -> float:
    return parse_cpu(str(value))


def _quantity_memory(value: str) -> int:
    return parse_memory_bytes(str(value))


def _pod_resources(pod: Obj, kind: str) -> tuple[float, int]:
    """Effective pod requests or limits: max(any init container, sum of containers)."""
    containers = pod["containers"]
    cpu = sum(_quantity_cpu(c["resources"][kind]["cpu"]) for c in containers)
    memory = sum(_quantity_memory(c["resources"][kind]["memory"]) for c in containers)
    for init in pod.get("initContainers", []):
        cpu = max(cpu, _quantity_cpu(init["resources"][kind]["cpu"]))
        memory = max(memory, _quantity_memory(init["resources"][kind]["memory"]))
    return cpu, memory


_NEXTFLOW_MEMORY = re.compile(r"^\s*memory\s*=\s*'(\d+(?:\.\d+)?)\s*([KMGTP]?B)'\s*$", re.M)
_NEXTFLOW_CPUS = re.compile(r"^\s*cpus\s*=\s*(\d+)\s*$", re.M)


def _task_pod_resources(config: str) -> tuple[int, int, bool]:
    """(cpus, memory bytes, cpuLimits) of the task pods Nextflow creates from `config`.

    Nextflow sets a task pod's memory request and limit from `memory`, read in 1024-based units
    (its MemoryUnit: `4 GB` is 4 GiB), and the CPU request (and with k8s.cpuLimits the limit)
    from `cpus`.
    """
    (cpus,) = _NEXTFLOW_CPUS.findall(config)
    ((number, unit),) = _NEXTFLOW_MEMORY.findall(config)
    exponent = {"B": 0, "KB": 1, "MB": 2, "GB": 3, "TB": 4, "PB": 5}[unit]
    memory = int(float(number) * 1024**exponent)
    return int(cpus), memory, "cpuLimits = true" in config


def test_quota_is_the_homelab_budget_and_the_preview_checks_it(objects: tuple[Obj, ...]) -> None:
    quota = _one(objects, "ResourceQuota", "nextflow-homelab")["spec"]["hard"]
    assert set(quota) == {"requests.cpu", "limits.cpu", "requests.memory", "limits.memory"}
    settings = _settings(objects)
    for kind in ("requests", "limits"):
        assert _quantity_cpu(quota[f"{kind}.cpu"]) == 14 == settings.homelab_total_cpu
        assert _quantity_memory(quota[f"{kind}.memory"]) == 50 * GIB
    assert settings.homelab_total_memory_gi == 50


def test_a_run_of_max_batch_count_fits_the_quota_beside_the_service(
    objects: tuple[Obj, ...],
) -> None:
    settings = _settings(objects)
    quota = _one(objects, "ResourceQuota", "nextflow-homelab")["spec"]["hard"]
    spec = RunSpec(
        run_id="r0123456789a",
        batch_count=settings.max_batch_count,
        rows_per_batch=settings.demo_rows_per_batch,
        generate_seconds=0,
        analyze_seconds=0,
    )
    controller = jobs.build_job(settings, spec)["spec"]["template"]["spec"]
    config = jobs.nextflow_config(settings, spec)
    worker_cpu, worker_memory, cpu_limits = _task_pod_resources(config)
    (limit_range,) = _one(objects, "LimitRange", "nextflow-defaults")["spec"]["limits"]
    # Without k8s.cpuLimits a task pod's CPU limit is the LimitRange default.
    worker_cpu_limit = worker_cpu if cpu_limits else _quantity_cpu(limit_range["default"]["cpu"])
    for kind in ("requests", "limits"):
        cpu, memory = _pod_resources(controller, kind)
        per_worker_cpu = worker_cpu if kind == "requests" else worker_cpu_limit
        cpu += settings.max_batch_count * per_worker_cpu
        memory += settings.max_batch_count * worker_memory
        for pod, replicas in _pods(objects):
            pod_cpu, pod_memory = _pod_resources(pod, kind)
            cpu += replicas * pod_cpu
            memory += replicas * pod_memory
        # Real headroom, not an exact fit: the quota refuses at admission, and a refusal aborts
        # the run (k8s/base/quota.yaml).
        assert cpu <= _quantity_cpu(quota[f"{kind}.cpu"]) - MIN_FREE_CPU + 1e-9, (kind, cpu)
        free_memory = _quantity_memory(quota[f"{kind}.memory"]) - memory
        assert free_memory >= MIN_FREE_MEMORY, (kind, memory / GIB)


def test_limit_range_admits_task_pods_and_bounds_every_pod(objects: tuple[Obj, ...]) -> None:
    (limits,) = _one(objects, "LimitRange", "nextflow-defaults")["spec"]["limits"]
    assert limits["type"] == "Container"
    for resource in ("cpu", "memory"):
        parse = _quantity_cpu if resource == "cpu" else _quantity_memory
        request = parse(limits["defaultRequest"][resource])
        default = parse(limits["default"][resource])
        maximum = parse(limits["max"][resource])
        assert 0 < request <= default <= maximum
    settings = _settings(objects)
    spec = RunSpec("r0123456789a", settings.max_batch_count, 1, 0, 0)
    worker_cpu, worker_memory, _ = _task_pod_resources(jobs.nextflow_config(settings, spec))
    # A task pod with only a CPU request (k8s.cpuLimits off) gets the default limit, which must
    # not be below the request, or the pod is rejected.
    assert _quantity_cpu(limits["default"]["cpu"]) >= worker_cpu
    controller = jobs.build_job(settings, spec)["spec"]["template"]["spec"]
    sizes = [(float(worker_cpu), worker_memory)]
    for container in controller["containers"] + controller.get("initContainers", []):
        for kind in ("requests", "limits"):
            resources = container["resources"][kind]
            sizes.append((_quantity_cpu(resources["cpu"]), _quantity_memory(resources["memory"])))
    for cpu, memory in sizes:
        assert cpu <= _quantity_cpu(limits["max"]["cpu"])
        assert memory <= _quantity_memory(limits["max"]["memory"])


# --- the workflow ConfigMap -----------------------------------------------------------------


def _workflow_files() -> dict[str, str]:
    files = {}
    for path in sorted(WORKFLOWS.rglob("*")):
        relative = path.relative_to(WORKFLOWS)
        if not path.is_file() or path.name == "kustomization.yaml":
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        assert path.name not in files, f"two workflow files named {path.name}: keys are flat"
        files[path.name] = path.read_text(encoding="utf-8")
    return files


def test_workflow_config_map_is_the_repository_workflow(objects: tuple[Obj, ...]) -> None:
    settings = _settings(objects)
    config_map = _one(objects, "ConfigMap", settings.workflow_configmap)
    files = _workflow_files()
    assert files, "workflows/ is empty"
    assert config_map["data"] == files
    assert "binaryData" not in config_map
    # The Job mounts these keys (flat) at their paths below the workflow directory.
    assert set(config_map["data"]) == set(jobs.WORKFLOW_FILES)
    for key, relative in jobs.WORKFLOW_FILES.items():
        assert (WORKFLOWS / relative).read_text(encoding="utf-8") == config_map["data"][key]


# --- network --------------------------------------------------------------------------------


def _ports(rule: Obj) -> set[tuple[str, int]]:
    return {(port["protocol"], port["port"]) for port in rule.get("ports", [])}


def _egress_ports(policy: Obj) -> set[tuple[str, int]]:
    return {port for rule in policy["spec"].get("egress", []) for port in _ports(rule)}


def test_namespace_denies_by_default(objects: tuple[Obj, ...]) -> None:
    deny = _one(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_service_network_policy(objects: tuple[Obj, ...]) -> None:
    policy = _one(objects, "NetworkPolicy", SERVICE)
    template = _one(objects, "Deployment", SERVICE)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= template.items()
    (ingress,) = policy["spec"]["ingress"]
    assert "from" not in ingress  # the Service, an ingress controller, port-forward
    assert _ports(ingress) == {("TCP", _settings(objects).port)}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)} <= _egress_ports(policy)


def test_controller_network_policy_allows_api_dns_and_plugin_registry(
    objects: tuple[Obj, ...],
) -> None:
    policy = _one(objects, "NetworkPolicy", "nextflow-controller")
    # Selects the pod of every Job (the Job controller sets this label), whatever jobs.py's
    # own labels are; the service creates no other Jobs here.
    assert policy["spec"]["podSelector"] == {
        "matchExpressions": [{"key": "batch.kubernetes.io/job-name", "operator": "Exists"}]
    }
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert _egress_ports(policy) == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)}


def test_redis_is_reachable_from_the_service_only() -> None:
    objects = _rendered("redis")
    policy = _one(objects, "NetworkPolicy", "redis")
    redis_labels = _one(objects, "Deployment", "redis")["spec"]["template"]["metadata"]["labels"]
    service_labels = _one(objects, "Deployment", SERVICE)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (ingress,) = policy["spec"]["ingress"]
    (source,) = ingress["from"]
    assert source["podSelector"]["matchLabels"].items() <= service_labels.items()
    assert _ports(ingress) == {("TCP", 6379)}
    assert "egress" not in policy["spec"]
    service_egress = _one(objects, "NetworkPolicy", SERVICE)["spec"]["egress"]
    to_redis = [rule for rule in service_egress if ("TCP", 6379) in _ports(rule)]
    (rule,) = to_redis
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= redis_labels.items()
