"""The Containerfile: builds from everything the distribution needs and runs as the user the pods expect."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from deploy_support import REPO, helm_template, one

CONTAINERFILE = REPO / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_base_image_is_python_slim() -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in instructions() if w == "ARG" and "=" in a}
    images = [a.split()[0] for w, a in instructions() if w == "FROM"]
    assert len(images) == 2, "a build stage and a runtime stage"
    for image in images:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"(docker\.io/library/)?python:3\.11-slim", resolved), resolved


def test_build_stage_copies_what_the_distribution_needs() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = stages()[0]
    copied = {src for w, a in build if w == "COPY" for src in a.split()[:-1] if not src.startswith("--")}
    assert "pyproject.toml" in copied
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copied, f"pyproject's readme {readme} is not copied"
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)}
    assert packages, "no packages found"
    assert packages <= copied, f"packages not copied into the build: {sorted(packages - copied)}"
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: no such path"
    assert any(w == "RUN" and "pip wheel" in a for w, a in build)


def test_runtime_stage_is_non_root_and_matches_the_chart(helm: Path) -> None:
    runtime = stages()[-1]
    users = [a for w, a in runtime if w == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    pod_security = one(helm_template(helm), "StatefulSet")["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == pod_security["runAsUser"] and int(gid or uid) == pod_security["runAsGroup"]
    entrypoint = [a for w, a in runtime if w == "ENTRYPOINT"]
    assert entrypoint == ['["shardreg"]']
    run = " ".join(a for w, a in runtime if w == "RUN")
    assert "--no-index" in run, "the runtime stage installs only the wheels built in the first stage"
    assert "COPY" not in {w for w, _ in runtime}, "no source tree in the runtime image"
    exposed = {int(p) for w, a in runtime if w == "EXPOSE" for p in a.split()}
    objects = helm_template(helm)
    config_ports = {int(p["containerPort"]) for kind in ("Deployment", "StatefulSet")
                    for p in one(objects, kind)["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert exposed == config_ports
