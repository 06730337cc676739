"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE."""

from __future__ import annotations

from quart import Response, request

from common import messages
from common.config.lifecycle import retention_policy
from common.errors import ErrorCode, RegistryError
from common.grammar import (
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    MAX_TAG_PARAMS,
    Header,
    digest_algorithm,
    digest_of,
    parse_reference,
    validate_name,
    validate_tag,
)
from common.manifest import parse_manifest
from gateway.context import current_state
from gateway.distribution import pullthrough
from gateway.distribution.answer import Answer, ReadRequest, quart_response
from gateway.distribution.common import delete_in_repo, event_context
from gateway.httputil import read_body
from gateway.local_reads import LocalReads
from gateway.quota import ensure_room_for
from gateway.state import GatewayState


def _accepts(accept: str | None, media_type: str) -> bool:
    """False only when the client listed manifest types and the stored one is not among them."""
    if not accept:
        return True
    listed = {part.split(";", 1)[0].strip() for part in accept.split(",")}
    if media_type in listed or "*/*" in listed or not listed & MANIFEST_MEDIA_TYPES:
        return True
    return False


def read_in_place(st: GatewayState, repo: str, head: bool) -> LocalReads | None:
    """The shards' metadata to answer a manifest GET/HEAD of ``repo`` from, if it may be: never for
    a pull-through repository (its tags are re-checked upstream), and a GET not for a repository a
    retention policy covers (the shard must see such a pull before the answer, so that a pass
    running meanwhile keeps the manifest)."""
    if st.local_reads is None or pullthrough.applies(st.config, repo):
        return None
    if not head and retention_policy(st.config.lifecycle.retention, repo) is not None:
        return None
    return st.local_reads


async def manifest_answer(st: GatewayState, req: ReadRequest, name: str, reference: str) -> Answer:
    """GET/HEAD of a manifest, for the Quart view and the read fast path (:mod:`gateway.distribution.reads`)."""
    validate_name(name)
    await st.access.authorize(req.headers, name, "read", req.remote_addr, method=req.method)
    try:
        parse_reference(reference)
    except RegistryError:
        # A reference that cannot exist is simply not there (the conformance suites want 404).
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, "no manifest has this reference (it is not a valid tag "
                            "or digest)", detail={"reference": reference[:200]}, status=404) from None
    head = req.method == "HEAD"
    info, body = None, b""
    local = read_in_place(st, name, head)
    if local is not None:
        found = local.manifest(st.client, name, reference, head)
        if found is not None:
            shard, info, body = found
            if not head:  # the shard records the pull (download counts), not waited for
                st.client.pulls.note(shard, name, info["digest"])
    if info is None:
        # a pull-through repository asks its shard with sync.manifest (fetched or re-checked upstream)
        reply = await pullthrough.get_manifest(st, name, reference, head)
        info = reply.result
        body = b"" if head else bytes(reply.frames[0])
    if not _accepts(req.accept, info["media_type"]):
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, "the manifest's media type is not in Accept",
                            detail={"mediaType": info["media_type"]}, status=404)
    headers = {Header.CONTENT_DIGEST: info["digest"], "ETag": f'"{info["digest"]}"',
               "Content-Length": str(info["size"])}  # HEAD keeps the real length
    return Answer(200, info["media_type"], headers, body)


async def get_manifest(name: str, reference: str) -> Response:
    return quart_response(await manifest_answer(current_state(), ReadRequest.from_quart(), name, reference))


async def put_manifest(name: str, reference: str) -> Response:
    validate_name(name)
    tag, digest = parse_reference(reference)
    access = current_state().access
    identity = await access.authorize(  # "create" or "update"; which one a tag needs, the shard decides
        request.headers, name, "create", request.remote_addr, tags=[t for t in (tag, *request.args.getlist("tag")) if t])
    allowed = access.actions(identity, name)
    body = await read_body(MAX_MANIFEST_SIZE, "manifest")
    parsed = parse_manifest(body, request.headers.get("Content-Type"))
    if digest is not None:
        actual = digest_of(body, digest_algorithm(digest))
        if actual != digest:
            raise RegistryError(ErrorCode.DIGEST_INVALID, "manifest digest does not match its content",
                                detail={"digest": digest, "actual": actual})
    else:
        digest = digest_of(body)
    extra_tags = request.args.getlist("tag")
    if len(extra_tags) > MAX_TAG_PARAMS:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"at most {MAX_TAG_PARAMS} tag parameters", status=414)
    tags = [validate_tag(t) for t in extra_tags]
    if tag is not None:
        tags.insert(0, tag)
    tags = list(dict.fromkeys(tags))
    args: messages.ManifestPutRequest = {
        "repo": name, "digest": digest, "media_type": parsed.media_type, "tags": tags, "blobs": parsed.blobs,
        "children": parsed.children, "subject": parsed.subject, "artifact_type": parsed.artifact_type,
        "annotations": parsed.annotations, "config": parsed.config,
        "pushed_by": identity.name or "",  # search metadata (PushedBy)
        "may_create": "create" in allowed, "may_update": "update" in allowed,
        # storage lifecycle: immutable tags yield to admins; events name the caller
        "admin": access.is_admin(identity), "event": event_context(identity),
    }
    await ensure_room_for(current_state(), name)
    await current_state().client.call_repo(messages.MANIFEST_PUT(args), [body])
    response = Response(b"", status=201)
    response.headers["Location"] = f"/v2/{name}/manifests/{digest}"
    response.headers[Header.CONTENT_DIGEST] = digest
    if parsed.subject:
        response.headers[Header.OCI_SUBJECT] = parsed.subject
    for t in extra_tags:
        response.headers.add(Header.OCI_TAG, t)
    return response


async def delete_manifest(name: str, reference: str) -> Response:
    validate_name(name)
    parse_reference(reference)
    access = current_state().access
    return await delete_in_repo(messages.MANIFEST_DELETE({"repo": name, "reference": reference}),
                                lambda identity: {"admin": access.is_admin(identity), "event": event_context(identity)})
