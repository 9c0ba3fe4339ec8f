"""Invariants of the Dockerfile that can be checked without a container engine."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nextflow_k8s_service.config import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
# ENV names of the image that are not Settings fields.
TOOL_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "FORWARDED_ALLOW_IPS"}


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def _instructions(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are removed by BuildKit
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "dangling line continuation"
    return result


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), value
    )


def _flags(arguments: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(arguments)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, FROM images resolved."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            _, words = _flags(instruction.arguments)
            image = _substitute(words[0], args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif not stages and instruction.keyword == "ARG":
            key, _, default = instruction.arguments.partition("=")
            args[key] = default.strip('"')
        else:
            assert stages, f"{instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse()[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def _pinned(image: str) -> bool:
    name, _, digest = image.partition("@")
    if digest:
        return digest.startswith("sha256:")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return bool(tag) and tag != "latest" and "$" not in image


def _env(stage: Stage) -> dict[str, str]:
    env = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.arguments):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def _exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)
    assert isinstance(words, list)
    assert words
    assert all(isinstance(w, str) for w in words)
    return words


def test_every_base_image_is_pinned(stages: list[Stage]) -> None:
    names = set()
    for stage in stages:
        if stage.image not in names:  # FROM <earlier stage> is fine
            assert _pinned(stage.image), stage.image
        if stage.name:
            names.add(stage.name)
    assert not _pinned("python:3.12-slim@sha")
    assert not _pinned("python:latest")
    assert not _pinned("python")
    assert _pinned("localhost:5000/python:3.12.11")


def test_multi_stage_build_with_a_slim_python_runtime(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2
    assert re.fullmatch(r"python:3\.1[12]\.\d+-slim(-\w+)?", final.image), final.image
    (builder,) = [s for s in stages if any("uv sync" in r.arguments for r in s.all("RUN"))]
    assert builder is not final, "dependencies are installed in a build stage"
    # The venv's interpreter symlink must resolve in the runtime stage: same Python image.
    assert builder.image == final.image


def test_final_stage_runs_as_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "no USER in the final stage"
    user = users[-1].arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert int(uid) > 0, user
    assert not gid or (gid.isdigit() and int(gid) > 0), user
    # Nothing after USER switches back to root.
    last = max(i for i, ins in enumerate(final.instructions) if ins.keyword == "USER")
    assert not [ins for ins in final.instructions[last + 1 :] if ins.keyword == "RUN"]


def test_cmd_and_entrypoint_are_exec_form_running_the_console_script(final: Stage) -> None:
    (cmd,) = final.all("CMD")
    words = _exec_form(cmd.arguments)
    for entrypoint in final.all("ENTRYPOINT"):
        words = _exec_form(entrypoint.arguments) + words
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert words == ["nextflow-k8s-service"]
    assert words[0] in scripts


def test_healthcheck_probes_health_with_the_standard_library(final: Stage) -> None:
    (healthcheck,) = final.all("HEALTHCHECK")
    _, _, command = healthcheck.arguments.partition("CMD ")
    words = _exec_form(command.strip())
    assert words[:2] == ["python", "-c"]
    assert "urllib.request" in words[2]
    assert "/health" in words[2]
    compile(words[2], "<healthcheck>", "exec")


def test_uv_sync_is_frozen_and_dependencies_come_before_the_source(stages: list[Stage]) -> None:
    (builder,) = [s for s in stages if any("uv sync" in r.arguments for r in s.all("RUN"))]
    assert _env(builder).get("UV_COMPILE_BYTECODE") == "1"
    syncs = [i for i, ins in enumerate(builder.instructions) if "uv sync" in ins.arguments]
    for index in syncs:
        arguments = builder.instructions[index].arguments
        assert "--frozen" in arguments
        assert "--no-dev" in arguments
    first = builder.instructions[syncs[0]]
    assert "--no-install-project" in first.arguments
    copies_before = [
        _flags(ins.arguments) for ins in builder.instructions[: syncs[0]] if ins.keyword == "COPY"
    ]
    sources = {src for flags, words in copies_before if "from" not in flags for src in words[:-1]}
    assert sources <= {"pyproject.toml", "uv.lock"}, "only the lock before the dependency layer"
    copies_after = [ins for ins in builder.instructions[syncs[0] :] if ins.keyword == "COPY"]
    assert any("nextflow_k8s_service" in ins.arguments for ins in copies_after)


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_copied_sources_exist_and_are_not_docker_ignored(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = {s.name for s in stages if s.name}
    checked = 0
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            assert ins.keyword == "COPY", "ADD fetches or unpacks; use COPY"
            flags, words = _flags(ins.arguments)
            if "from" in flags:
                assert flags["from"] in names or _pinned(flags["from"]), flags["from"]
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source.rstrip("/"), patterns), f"{source} is .dockerignored"
                checked += 1
    assert checked >= 4
    assert _ignored("tests/deploy", ["tests"])
    assert not _ignored("workflows/demo.nf", ["tests"])


def test_runtime_layout_and_environment(final: Stage) -> None:
    env = _env(final)
    assert env["WORKSPACE_DIR"] == "/workspace"
    assert env["WORKFLOW_DIR"] == "/app/workflows"
    assert env["HOST"] == "0.0.0.0"
    assert "FORWARDED_ALLOW_IPS" in env
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) - fields <= TOOL_ENV, sorted(set(env) - fields - TOOL_ENV)
    copies = [_flags(ins.arguments)[1] for ins in final.all("COPY")]
    assert ["workflows/", "/app/workflows/"] in copies
    exposed = [ins.arguments for ins in final.all("EXPOSE")]
    assert exposed == [env["PORT"]] == [str(Settings.model_fields["port"].default)]
