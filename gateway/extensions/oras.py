"""The legacy ORAS artifacts API: ``GET /oras/artifacts/v1/{repo}/manifests/{digest}/referrers``.

Answers ``{"references": [descriptor, ...]}`` of the manifests whose subject is ``digest``,
optionally filtered by ``?artifactType=`` (repeatable). Always on, as in zot.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from common import messages
from common.rules import parse_digest, validate_name
from gateway.extensions.common import caller, json_response, state

blueprint = Blueprint("ext_oras", __name__)


@blueprint.route("/oras/artifacts/v1/<path:name>/manifests/<digest>/referrers", methods=["GET"])
async def referrers(name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    await caller(name, "read")
    wanted = [t for t in request.args.getlist("artifactType") if t]
    reply = await state().client.call_repo(messages.REFERRERS({"repo": name, "subject": digest, "artifact_types": wanted}))
    return json_response({"references": reply.result["manifests"]})
