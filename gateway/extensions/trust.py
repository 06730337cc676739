"""Image trust: ``POST /v2/_zot/ext/cosign`` (a PEM public key) and
``POST /v2/_zot/ext/notation?truststoreType=ca|signingAuthority`` (certificates, PEM or DER).

Uploads are at most 8 MiB (413 beyond), validated (400 for anything that is not a key or
certificate) and sent to every shard, which keeps its own copy and verifies the signatures of
its images with it (:mod:`shard.search_meta`, :mod:`common.imagetrust`). When auth is on,
only admins (``accessControl.adminPolicy``) may upload.
"""

from __future__ import annotations

import asyncio

from quart import Response, request

from common import imagetrust, messages
from common.errors import ErrorCode, RegistryError
from gateway.context import authorize, current_state
from gateway.httputil import read_body


async def _broadcast(kind: str, store_type: str, data: bytes) -> None:
    client = current_state().client
    await asyncio.gather(*(client.call(i, messages.TRUST_PUT({"kind": kind, "type": store_type}), [data])
                           for i in range(client.count)))


async def upload_cosign_key() -> Response:
    await authorize(None, "admin")
    data = await read_body(imagetrust.MAX_TRUST_UPLOAD)
    try:
        imagetrust.load_public_key(data)
    except ValueError as exc:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"invalid cosign public key: {exc}", status=400) from None
    await _broadcast("cosign", "", data.strip() + b"\n")
    return Response(b"", status=200)


async def upload_notation_certificate() -> Response:
    store_type = request.args.get("truststoreType", "ca") or "ca"
    if store_type not in imagetrust.NOTATION_TRUSTSTORE_TYPES:
        raise RegistryError(ErrorCode.BAD_REQUEST, "truststoreType must be ca or signingAuthority", status=400)
    await authorize(None, "admin")
    data = await read_body(imagetrust.MAX_TRUST_UPLOAD)
    try:
        imagetrust.load_certificates(data)
    except ValueError as exc:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"invalid certificate: {exc}", status=400) from None
    await _broadcast("notation", store_type, data)
    return Response(b"", status=200)
