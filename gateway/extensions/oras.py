"""The legacy ORAS artifacts API: ``GET /oras/artifacts/v1/{repo}/manifests/{digest}/referrers``.

Answers ``{"references": [descriptor, ...]}`` of the manifests whose subject is ``digest``,
optionally filtered by ``?artifactType=`` (repeatable). Always on, as in zot.
"""

from __future__ import annotations

from quart import Response, request

from common import messages
from common.grammar import parse_digest, validate_name
from gateway.context import authorize, current_state
from gateway.extensions.common import json_response


async def referrers(name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    await authorize(name, "read")
    wanted = [t for t in request.args.getlist("artifactType") if t]
    reply = await current_state().client.call_repo(messages.REFERRERS({"repo": name, "subject": digest, "artifact_types": wanted}))
    return json_response({"references": reply.result["manifests"]})
