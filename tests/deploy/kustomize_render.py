"""Render a kustomization: with `kubectl kustomize` when kubectl exists, else in pure Python.

The Python renderer implements only the kustomize features `k8s/` and `workflows/` use, with
kustomize's semantics (checked against kubectl by the tests whenever kubectl is installed):
`resources` (files and directories), `namespace`, `labels` (without selectors or templates),
`configMapGenerator` with `files` and `generatorOptions` (`disableNameSuffixHash: true`,
`labels`), `patches` in JSON 6902 form with a `target`, `replicas` and `images`. Anything else
raises `UnsupportedKustomization`, so the fallback can never silently render something different.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

_SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "generatorOptions",
    "configMapGenerator",
    "patches",
    "replicas",
    "images",
}
# Kinds that are not namespaced, among those a deployment like this one could contain.
_CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "CustomResourceDefinition",
}
_SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


class UnsupportedKustomization(Exception):
    """The kustomization uses a feature the pure-Python renderer does not implement."""


def kubectl_path() -> str | None:
    return shutil.which("kubectl")


def render_with_kubectl(directory: Path, kubectl: str) -> list[Obj]:
    """`kubectl kustomize <directory>` (default load restrictor), parsed."""
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render(directory: Path) -> list[Obj]:
    """Render with kubectl if installed, else with the pure-Python renderer."""
    kubectl = kubectl_path()
    if kubectl is not None:
        return render_with_kubectl(directory, kubectl)
    return render_python(directory)


def render_python(directory: Path) -> list[Obj]:
    """Build the kustomization in `directory` the way `kustomize build` would."""
    return _build(directory.resolve(), visited=())


def _kustomization(directory: Path) -> Obj:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            unknown = set(data) - _SUPPORTED_FIELDS
            if unknown:
                raise UnsupportedKustomization(f"{path}: unsupported fields {sorted(unknown)}")
            return dict(data)
    raise FileNotFoundError(f"no kustomization file in {directory}")


def _build(directory: Path, visited: tuple[Path, ...]) -> list[Obj]:
    for root in visited:
        # kustomize: "cycle detected: candidate root ... contains visited root ...".
        if root == directory or root.is_relative_to(directory):
            raise RuntimeError(f"cycle: {directory} contains visited root {root}")
    kustomization = _kustomization(directory)
    visited = (*visited, directory)
    resources: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources.extend(_build(path, visited))
        else:
            _check_in_root(path, directory)
            text = path.read_text(encoding="utf-8")
            resources.extend(doc for doc in yaml.safe_load_all(text) if doc)
    resources.extend(_generate_config_maps(directory, kustomization))
    for resource in resources:
        if "namespace" in kustomization:
            _set_namespace(resource, kustomization["namespace"])
        for spec in kustomization.get("labels", []):
            _add_labels(resource, spec)
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, patch)
    for replica in kustomization.get("replicas", []):
        _set_replicas(resources, replica)
    for image in kustomization.get("images", []):
        for resource in resources:
            _set_image(resource, image)
    return resources


def _check_in_root(path: Path, root: Path) -> None:
    # kustomize's default load restrictor (LoadRestrictionsRootOnly), symlinks resolved.
    if not path.resolve().is_relative_to(root.resolve()):
        raise PermissionError(f"security; file '{path}' is not in or below '{root}'")


def _generate_config_maps(directory: Path, kustomization: Obj) -> Iterator[Obj]:
    options = dict(kustomization.get("generatorOptions", {}))
    unknown = set(options) - {"disableNameSuffixHash", "labels"}
    if unknown:
        raise UnsupportedKustomization(f"generatorOptions {sorted(unknown)}")
    generators = kustomization.get("configMapGenerator", [])
    if generators and options.get("disableNameSuffixHash") is not True:
        raise UnsupportedKustomization("name suffix hashes are not implemented")
    for generator in generators:
        unknown = set(generator) - {"name", "files"}
        if unknown:
            raise UnsupportedKustomization(f"configMapGenerator {sorted(unknown)}")
        data: dict[str, str] = {}
        binary: dict[str, str] = {}
        for source in generator.get("files", []):
            key, _, relative = source.rpartition("=")
            path = directory / relative
            _check_in_root(path, directory)
            key = key or path.name
            if key in data or key in binary:
                raise ValueError(f"configMapGenerator {generator['name']}: duplicate key {key}")
            content = path.read_bytes()
            try:
                data[key] = content.decode("utf-8")
            except UnicodeDecodeError:
                binary[key] = base64.b64encode(content).decode("ascii")
        config_map: Obj = {"apiVersion": "v1", "kind": "ConfigMap"}
        metadata: Obj = {"name": generator["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        config_map["metadata"] = metadata
        if data:
            config_map["data"] = data
        if binary:
            config_map["binaryData"] = binary
        yield config_map


def _set_namespace(resource: Obj, namespace: str) -> None:
    kind = resource["kind"]
    if kind == "Namespace":
        # kustomize renames Namespace objects to the kustomization's namespace.
        resource["metadata"]["name"] = namespace
    elif kind not in _CLUSTER_SCOPED:
        resource["metadata"]["namespace"] = namespace
    if kind in {"RoleBinding", "ClusterRoleBinding"}:
        # Only subjects naming the `default` ServiceAccount follow the namespace.
        for subject in resource.get("subjects", []):
            if subject.get("kind") == "ServiceAccount" and subject.get("name") == "default":
                subject["namespace"] = namespace


def _add_labels(resource: Obj, spec: Obj) -> None:
    if spec.get("includeSelectors") or spec.get("includeTemplates"):
        raise UnsupportedKustomization("labels with includeSelectors or includeTemplates")
    labels = resource["metadata"].setdefault("labels", {})
    labels.update(spec.get("pairs", {}))


def _matches(resource: Obj, target: Obj) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name"}
    if unknown:
        raise UnsupportedKustomization(f"patch target {sorted(unknown)}")
    group, _, version = resource["apiVersion"].rpartition("/")
    return bool(
        target.get("kind", resource["kind"]) == resource["kind"]
        and target.get("name", resource["metadata"]["name"]) == resource["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def _apply_patch(resources: list[Obj], patch: Obj) -> None:
    if set(patch) != {"target", "patch"}:
        raise UnsupportedKustomization(f"patch with fields {sorted(patch)}")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise UnsupportedKustomization("strategic-merge patches are not implemented")
    matched = [resource for resource in resources if _matches(resource, patch["target"])]
    if not matched:
        raise ValueError(f"patch target {patch['target']} matches nothing")
    for resource in matched:
        for operation in operations:
            _json6902(resource, operation)


def _json6902(document: Obj, operation: Obj) -> None:
    op = operation["op"]
    if op not in {"add", "replace", "remove"}:
        raise UnsupportedKustomization(f"JSON patch op {op}")
    tokens = [
        token.replace("~1", "/").replace("~0", "~") for token in operation["path"].split("/")[1:]
    ]
    parent: Any = document
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add":
            parent.insert(len(parent) if last == "-" else int(last), value)
        elif op == "replace":
            parent[int(last)] = value
        else:
            del parent[int(last)]
    elif op == "add":
        parent[last] = value
    else:
        if last not in parent:
            raise KeyError(f"JSON patch {op}: {operation['path']} does not exist")
        if op == "replace":
            parent[last] = value
        else:
            del parent[last]


def _set_replicas(resources: list[Obj], replica: Obj) -> None:
    for resource in resources:
        if resource["kind"] in _SCALABLE and resource["metadata"]["name"] == replica["name"]:
            resource["spec"]["replicas"] = replica["count"]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` -> (name, tag, digest); a registry port is not a tag."""
    name, _, digest = image.partition("@")
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _set_image(node: Any, image: Obj) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise UnsupportedKustomization(f"images {sorted(unknown)}")
    if isinstance(node, list):
        for item in node:
            _set_image(item, image)
        return
    if not isinstance(node, dict):
        return
    for key in ("containers", "initContainers"):
        for container in node.get(key, []) if isinstance(node.get(key), list) else []:
            name, tag, digest = split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                suffix = f":{tag}" if tag else ""
                container["image"] = name + suffix + (f"@{digest}" if digest else "")
    for value in node.values():
        _set_image(value, image)
