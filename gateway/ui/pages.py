"""The browsing pages: home, explore/search, a repository, an image (tag)."""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request

from common import boundedjson, messages
from common.errors import ErrorCode, RegistryError
from common.grammar import NAME_RE, TAG_RE
from gateway.auth.identity import Identity
from gateway.context import current_state
from gateway.ui import data
from gateway.ui.render import page
from gateway.ui.viewer import ui_handler, viewer

PAGE_SIZE = 10
MAX_CONFIG = 1024 * 1024
SORTS = {"relevance": "RELEVANCE", "updated": "UPDATE_TIME", "downloads": "DOWNLOADS", "stars": "STARS"}
OS_CHOICES = ("linux", "windows", "darwin", "freebsd")
ARCH_CHOICES = ("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64")
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"


def _check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise RegistryError(ErrorCode.NAME_UNKNOWN, status=404)


def registry_host() -> str:
    """The registry as clients name it in pull commands (``http.externalUrl`` first)."""
    external = current_state().config.http.external_url
    if external:
        return external.split("://", 1)[-1].rstrip("/")
    return (request.headers.get("host") or "localhost").strip()[:255]


def pull_commands(repo: str, tag: str, artifact_type: str | None) -> list[tuple[str, str]]:
    host = registry_host()
    ref = f"{host}/{repo}:{tag}"
    if artifact_type == HELM_CONFIG:
        return [("helm", f"helm pull oci://{host}/{repo} --version {tag}"), ("oras", f"oras pull {ref}")]
    commands = [("docker", f"docker pull {ref}"), ("podman", f"podman pull {ref}"), ("oras", f"oras pull {ref}")]
    if artifact_type:
        return [commands[2]]
    return commands


@ui_handler
async def home() -> Response:
    me = await viewer()
    found = await data.home(me.identity)
    return page("home.html", me=me, title="Home", **found)


def _page_number(value: str | None) -> int:
    try:
        number = int(value or 1)
    except ValueError:
        return 1
    return min(max(number, 1), 10_000)


@ui_handler
async def explore() -> Response:
    me = await viewer()
    text = (request.args.get("q") or "").strip()[:256]
    os_, arch = request.args.get("os") or "", request.args.get("arch") or ""
    signed = request.args.get("signed") == "1"
    sort = request.args.get("sort") or "relevance"
    sort = sort if sort in SORTS else "relevance"
    number = _page_number(request.args.get("page"))
    flt: dict[str, Any] = {}
    if os_ in OS_CHOICES:
        flt["Os"] = [os_]
    if arch in ARCH_CHOICES:
        flt["Arch"] = [arch]
    if signed:
        flt["HasToBeSigned"] = True
    found = await data.search(me.identity, text, flt, PAGE_SIZE, (number - 1) * PAGE_SIZE, SORTS[sort])
    total = found["Page"]["TotalCount"]
    pages = max(1, -(-total // PAGE_SIZE))
    base = {"q": text, "os": os_ if os_ in OS_CHOICES else "", "arch": arch if arch in ARCH_CHOICES else "",
            "signed": "1" if signed else "", "sort": sort}
    return page("explore.html", me=me, title="Explore", q=text, os=base["os"], arch=base["arch"],
                signed=signed, sort=sort, sorts=SORTS, os_choices=OS_CHOICES, arch_choices=ARCH_CHOICES,
                repos=found["Repos"] or [], images=found["Images"] or [], total=total, number=number,
                pages=pages, query={k: v for k, v in base.items() if v})


def _may_delete(identity: Identity, repo: str) -> bool:
    return current_state().config.storage.allow_delete and "delete" in current_state().access.actions(identity, repo)


@ui_handler
async def repository(name: str) -> Response:
    _check_name(name)
    me = await viewer()
    info = await data.repository(me.identity, name)
    images = info["Images"] or []
    newest = (info["Summary"] or {}).get("NewestImage") or {}
    for image in images:
        image["pull"] = pull_commands(name, image["Tag"], image.get("ArtifactType"))
    deleted = request.args.get("deleted") or ""
    return page("repository.html", me=me, title=name, repo=name, summary=info["Summary"] or {}, newest=newest,
                images=images, may_delete=_may_delete(me.identity, name),
                deleted=deleted if TAG_RE.fullmatch(deleted) else "")


async def image_config(repo: str, digest: str) -> dict[str, Any]:
    """The image configuration (env, entrypoint, labels), read as ``GET /v2/<repo>/blobs/<digest>`` reads it.

    The caller was checked for ``read`` on ``repo`` by the search resolvers that named the digest."""
    client = current_state().client
    try:
        stated = await client.call_repo(messages.BLOB_STAT({"repo": repo, "digest": digest}))
    except RegistryError:
        return {}
    info, shard = stated.result, stated.shard  # the owner that answered (after any resharding redirect)
    if info["size"] > MAX_CONFIG:
        return {}
    raw = b"".join([bytes(frame.bytes) async for frame in client.read_blob(shard, digest, 0, info["size"])])
    try:
        config = boundedjson.loads(raw, max_depth=16)
    except ValueError:
        return {}
    inner = config.get("config") if isinstance(config, dict) else None
    return inner if isinstance(inner, dict) else {}


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps(value)
    return "" if value is None else str(value)


@ui_handler
async def image(name: str, reference: str) -> Response:
    _check_name(name)
    if not TAG_RE.fullmatch(reference):
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, status=404)
    me = await viewer()
    if not current_state().access.can_read(me.identity, name):  # not there, as in search
        raise RegistryError(ErrorCode.NAME_UNKNOWN, status=404)
    found = await data.image(me.identity, name, reference)
    manifests = found.get("Manifests") or []
    subjects = list(dict.fromkeys([found["Digest"], *(m["Digest"] for m in manifests)]))
    referrers = await data.referrers(me.identity, name, subjects)
    for manifest in manifests:
        config = await image_config(name, manifest["ConfigDigest"]) if manifest.get("ConfigDigest") else {}
        manifest["config"] = {
            "Env": [str(e) for e in config.get("Env") or [] if isinstance(e, str)],
            "Entrypoint": _as_text(config.get("Entrypoint")), "Cmd": _as_text(config.get("Cmd")),
            "WorkingDir": _as_text(config.get("WorkingDir")), "User": _as_text(config.get("User")),
            "Labels": {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
            if isinstance(config.get("Labels"), dict) else {},
        }
        manifest["referrers"] = referrers.get(manifest["Digest"], [])
    return page("image.html", me=me, title=f"{name}:{reference}", repo=name, tag=reference, image=found,
                manifests=manifests, index_referrers=[] if found["Digest"] in {m["Digest"] for m in manifests}
                else referrers.get(found["Digest"], []),
                pull=pull_commands(name, reference, found.get("ArtifactType")),
                may_delete=_may_delete(me.identity, name))


@ui_handler
async def image_lineage(name: str, reference: str) -> Response:
    """Base and derived images: its own page, which the image page loads into itself (ui.js)."""
    _check_name(name)
    if not TAG_RE.fullmatch(reference):
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, status=404)
    me = await viewer()
    if not current_state().access.can_read(me.identity, name):
        raise RegistryError(ErrorCode.NAME_UNKNOWN, status=404)
    found = await data.lineage(me.identity, name, reference, None)
    return page("lineage.html", me=me, title=f"{name}:{reference} base and derived images", repo=name,
                tag=reference, base=found["base"], derived=found["derived"])
