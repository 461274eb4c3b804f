"""The Dockerfile: hadolint-clean and built the way issue 3 asks (it cannot be built here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .support import HADOLINT, REPO, find_tool, run_tool

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def _global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for keyword, arguments in _instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in arguments:
            name, _, default = arguments.partition("=")
            args[name] = default
    return args


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    args = _global_args()
    for keyword, arguments in _instructions():
        if keyword == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append((keyword, arguments))
    return stages


def test_hadolint_is_clean() -> None:
    hadolint = find_tool(*HADOLINT)
    run_tool([hadolint, "--failure-threshold", "info", str(DOCKERFILE)])


def test_multi_stage_on_a_pinned_slim_official_python() -> None:
    stages = _stages()
    assert len(stages) >= 2, "build and run in separate stages"
    for stage in stages:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?", stage.base), stage.base
    minor = re.match(r"python:(\d+)\.(\d+)", stages[-1].base)
    assert minor is not None
    assert (int(minor.group(1)), int(minor.group(2))) >= (3, 11)


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    final = _stages()[-1]
    users = [arguments for keyword, arguments in final.instructions if keyword == "USER"]
    assert users, "the final stage never leaves root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), "runAsNonRoot can only verify a numeric user"
    assert int(user) != 0
    if group:
        assert group.isdigit()
        assert int(group) != 0


def test_final_stage_has_no_compiler_and_no_package_installs() -> None:
    final = _stages()[-1]
    for keyword, arguments in final.instructions:
        if keyword == "RUN":
            assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", arguments), (
                arguments
            )
    assert any(
        keyword == "COPY" and arguments.startswith("--from=")
        for keyword, arguments in final.instructions
    ), "the final stage should copy the built environment from the build stage"


def test_exposes_the_default_port_with_an_exec_form_entrypoint() -> None:
    final = _stages()[-1]
    keywords = dict(final.instructions)
    assert keywords["EXPOSE"] == "9776"
    assert re.fullmatch(r'\["rocketchat-livechat-exporter"(, "[^"]*")*\]', keywords["ENTRYPOINT"])


def test_has_oci_labels() -> None:
    labels = " ".join(a for k, a in _stages()[-1].instructions if k == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing, then allow"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        word.rstrip("/")
        for keyword, arguments in _instructions()
        if keyword == "COPY" and not arguments.startswith("--from")
        for word in arguments.split()[:-1]
    }
    assert copied <= allowed, f"COPY reads files .dockerignore leaves out: {copied - allowed}"
    for needed in copied:
        assert (REPO / needed).exists(), f"COPY {needed}: no such file in the repository"
