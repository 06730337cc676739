"""Grammars and constants of the OCI distribution spec: names, tags, digests, media types, headers."""

from __future__ import annotations

import hashlib
import re

from common.errors import ErrorCode, RegistryError

NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
MAX_NAME_LENGTH = 255

#: Supported digest algorithms and the length of their hex encoding.
DIGEST_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX_RE = {alg: re.compile(f"[a-f0-9]{{{n}}}") for alg, n in DIGEST_ALGORITHMS.items()}

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
#: Smallest chunk we ask clients to send in a chunked upload (advertised as OCI-Chunk-Min-Length).
CHUNK_MIN_LENGTH = 1
#: A manifest PUT may carry at most this many ``?tag=`` parameters (zot's limit).
MAX_TAG_PARAMS = 46


class MediaType:
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    OCTET_STREAM = "application/octet-stream"
    JSON = "application/json"


#: Manifest media types the registry stores; an index-like type lists child manifests.
MANIFEST_MEDIA_TYPES = frozenset(
    {MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST, MediaType.DOCKER_MANIFEST_LIST}
)
INDEX_MEDIA_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})


class Header:
    API_VERSION = "Docker-Distribution-API-Version"
    CONTENT_DIGEST = "Docker-Content-Digest"
    UPLOAD_UUID = "Docker-Upload-UUID"
    ZOT_UPLOAD_UUID = "Blob-Upload-UUID"
    OCI_SUBJECT = "OCI-Subject"
    OCI_TAG = "OCI-Tag"
    OCI_FILTERS_APPLIED = "OCI-Filters-Applied"
    OCI_CHUNK_MIN_LENGTH = "OCI-Chunk-Min-Length"
    RETRY_AFTER = "Retry-After"
    WWW_AUTHENTICATE = "WWW-Authenticate"


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name[:300]})
    return name


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, detail={"tag": tag[:200]})
    return tag


def parse_digest(value: str, code: ErrorCode = ErrorCode.DIGEST_INVALID) -> str:
    """Validate ``alg:hex`` for a supported algorithm; raise ``code`` (status 400) otherwise."""
    match = DIGEST_RE.fullmatch(value or "")
    if not match:
        raise RegistryError(code, "invalid digest", detail={"digest": (value or "")[:200]}, status=400)
    alg, hexpart = match.groups()
    if alg not in DIGEST_ALGORITHMS:
        raise RegistryError(code, f"unsupported digest algorithm {alg}", detail={"digest": value[:200]},
                            status=400)
    if not _HEX_RE[alg].fullmatch(hexpart):
        raise RegistryError(code, "invalid digest encoding", detail={"digest": value[:200]}, status=400)
    return value


def is_digest(value: str) -> bool:
    return DIGEST_RE.fullmatch(value) is not None


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def digest_algorithm(digest: str) -> str:
    return digest.split(":", 1)[0]


def parse_reference(reference: str) -> tuple[str | None, str | None]:
    """Split a manifest reference into (tag, digest); exactly one is set. Raises on neither."""
    if ":" in reference:
        return None, parse_digest(reference)
    if is_tag(reference):
        return reference, None
    raise RegistryError(ErrorCode.TAG_INVALID, "invalid reference", detail={"reference": reference[:200]})
