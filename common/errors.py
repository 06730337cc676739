"""The one table of OCI error codes and the one exception type that carries them.

Handlers raise ``RegistryError(ErrorCode.X, detail=...)``; the gateway renders it in one
place as ``{"errors": [{"code", "message", "detail"}]}`` with the code's HTTP status.
Shards send the same triple over the wire, so an error raised on a shard reaches the
client unchanged.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    """(HTTP status, default message) per OCI / zot error code."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    TAG_INVALID = (400, "manifest tag did not match URI")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    # Not OCI codes, but rendered the same way so that clients always get a JSON body.
    RANGE_INVALID = (416, "requested range not satisfiable")
    PAYLOAD_TOO_LARGE = (413, "payload too large")
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported media type")
    NOT_FOUND = (404, "not found")
    METHOD_NOT_ALLOWED = (405, "method not allowed")
    BAD_REQUEST = (400, "bad request")
    UNAVAILABLE = (503, "service unavailable")
    #: The shard's disk (or its file size limit) is full: the server's fault, not the client's.
    INSUFFICIENT_STORAGE = (507, "insufficient storage")
    INTERNAL = (500, "internal server error")
    # Resharding (issue 12). The first four are answers between shards and gateways that never
    # reach a client (the gateway follows them); 503 if one ever did.
    MOVED = (503, "the name has moved to another shard")
    ASK = (503, "the name is not on this shard yet: ask its new owner")
    STALE_MAP = (503, "the request was routed with an older cluster map")
    TRYAGAIN = (503, "the name is being moved: try again")
    RESIZE_RUNNING = (409, "a resize is running")
    NO_RESIZE = (409, "no resize is running")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class RegistryError(Exception):
    """An error with an OCI code; ``status`` overrides the code's usual HTTP status."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = headers or {}
        super().__init__(f"{code.name}: {self.message}")

    def body(self) -> dict[str, Any]:
        return {"errors": [{"code": self.wire_code, "message": self.message, "detail": self.detail or {}}]}

    @property
    def wire_code(self) -> str:
        """Codes outside the OCI set are reported as their nearest OCI relative."""
        return _WIRE_ALIASES.get(self.code, self.code.name)

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code.name, "message": self.message, "detail": self.detail, "status": self.status,
                "headers": self.headers}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RegistryError:
        try:
            code = ErrorCode[data.get("code", "INTERNAL")]
        except KeyError:
            code = ErrorCode.INTERNAL
        return cls(code, data.get("message"), data.get("detail"), status=data.get("status"),
                   headers=data.get("headers") or {})


_WIRE_ALIASES = {
    ErrorCode.RANGE_INVALID: "BLOB_UPLOAD_INVALID",
    ErrorCode.PAYLOAD_TOO_LARGE: "SIZE_INVALID",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "MANIFEST_INVALID",
    ErrorCode.NOT_FOUND: "NAME_UNKNOWN",
    ErrorCode.METHOD_NOT_ALLOWED: "UNSUPPORTED",
    ErrorCode.BAD_REQUEST: "UNSUPPORTED",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.INTERNAL: "INTERNAL_ERROR",
    ErrorCode.MOVED: "UNAVAILABLE",
    ErrorCode.ASK: "UNAVAILABLE",
    ErrorCode.STALE_MAP: "UNAVAILABLE",
    ErrorCode.TRYAGAIN: "UNAVAILABLE",
}
