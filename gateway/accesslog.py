"""The access log and the audit log: the one place that sees every HTTP request (it wraps the whole
gateway app, upload data plane and metrics endpoint included).

* Every request gets a request id (the client's ``X-Request-Id`` when it is a sane one): it is
  answered in ``X-Request-Id``, named in every log line written while serving it and sent to the
  shard, whose log lines name it too (:mod:`common.requestid`).
* Access log (``log.access``, on by default, at ``info``): one line per request — client, user
  (a name, never a credential), method, path (without the query), repository, status, bytes in
  and out, duration, request id. Text by default, JSON with ``log.format: json``.
* Error answers: 4xx are logged at ``debug`` with their OCI code and message, 5xx at ``error``.
* Audit log (``log.audit``: a file): one JSON line per state-changing request — push, tag,
  delete, mount, API key and session changes, user preferences, trust material — with who made
  it and the outcome (refused attempts too).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common.config import Config
from common.requestid import CALLER, REQUEST_ID, Caller, new_request_id
from gateway.metrics.labels import classify
from gateway.routes import ROUTES

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("shardreg.access")
error_log = logging.getLogger("shardreg.gateway.errors")
CLIENT_GONE = 499
#: Most bytes of an error body kept to log its message.
ERROR_BODY_KEEP = 2048

#: State-changing requests, by route name: the audit log's action names.
AUDITED = {
    "manifest_put": "manifest.push", "manifest_delete": "manifest.delete", "blob_delete": "blob.delete",
    "upload_session:PUT": "blob.push", "upload_session:DELETE": "upload.cancel",
    "upload_start:digest": "blob.push", "upload_start:mount": "blob.mount",
    "login": "session.login", "logout": "session.logout",
    "apikey_create": "apikey.create", "apikey_delete": "apikey.delete",
    "userprefs": "userprefs.change", "cosign": "trust.upload", "notation": "trust.upload",
}
#: (method, route label) → route name, for every spelling of every route.
_ROUTE_NAMES = {(method, template): route.name for route in ROUTES for method in route.methods
                for template in (route.template, *route.aliases)}


def audit_action(method: str, label: str, query: bytes) -> str | None:
    """The audit action of a request, or None when it changes nothing (reads, PATCH chunks, searches)."""
    name = _ROUTE_NAMES.get((method, label)) or _ROUTE_NAMES.get((method, label.rstrip("/")))
    if name is None:
        return None
    if name == "upload_session":
        return AUDITED.get(f"{name}:{method}")
    if name == "upload_start":  # a plain POST only opens a session; with digest or mount it stores a blob
        if b"mount=" in query:
            return AUDITED["upload_start:mount"]
        return AUDITED["upload_start:digest"] if b"digest=" in query else None
    return AUDITED.get(name)


def _audit_logger(path: str) -> logging.Logger:
    logger = logging.getLogger("shardreg.audit")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for old in logger.handlers[:]:
        logger.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")  # appends: one line per write
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


def _error_summary(status: int, body: bytes) -> str:
    try:
        first = json.loads(body)["errors"][0]
        return f"{first['code']}: {first['message']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"status {status}"


class RequestLog:
    """Wraps the gateway app: request ids, the access log, error lines and the audit log."""

    def __init__(self, config: Config, app: ASGIApp) -> None:
        self.app = app
        self.access = config.log.access
        self.audit = _audit_logger(config.log.audit) if config.log.audit else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = new_request_id(offered)
        REQUEST_ID.set(request_id)
        caller = Caller()
        CALLER.set(caller)
        header = (b"x-request-id", request_id.encode())
        status, received, sent = 0, 0, 0
        error_body = bytearray()

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def tagging_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            elif kind == "http.response.body":
                body = message.get("body", b"")
                sent += len(body)
                if status >= 400 and len(error_body) < ERROR_BODY_KEEP:
                    error_body.extend(body[:ERROR_BODY_KEEP - len(error_body)])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, counting_receive, tagging_send)
        except Exception:
            status = status or 500  # Hypercorn answers 500 for an app that raised before answering
            raise
        finally:
            self._record(scope, caller, status or CLIENT_GONE, received, sent, time.perf_counter() - start,
                         bytes(error_body))

    def _record(self, scope: Scope, caller: Caller, status: int, received: int, sent: int, seconds: float,
                error_body: bytes) -> None:
        method, path = scope["method"], scope["path"]
        label, repo = classify(path)
        client = scope.get("client")
        address = client[0] if client else "-"
        user = caller.user or "-"
        if status >= 500 and status != CLIENT_GONE:
            error_log.error("%s %s answered %d: %s", method, path[:200], status, _error_summary(status, error_body))
        elif status >= 400 and status != CLIENT_GONE:
            error_log.debug("%s %s answered %d: %s", method, path[:200], status, _error_summary(status, error_body))
        duration_ms = round(seconds * 1000, 3)
        if self.access:
            access_log.info('%s %s "%s %s" %d in=%d out=%d %.1fms repo=%s', address, user, method, path, status,
                            received, sent, duration_ms, repo or "-",
                            extra={"client": address, "user": user, "method": method, "path": path, "repo": repo,
                                   "status": status, "bytes_in": received, "bytes_out": sent,
                                   "duration_ms": duration_ms})
        if self.audit is not None:
            action = audit_action(method, label, scope.get("query_string", b""))
            if action is not None:
                self.audit.info(json.dumps({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "request_id": REQUEST_ID.get(),
                    "action": action, "user": caller.user, "auth": caller.via, "client": address,
                    "method": method, "path": path, "repo": repo, "status": status,
                    "outcome": "ok" if status < 400 else "refused" if status < 500 else "failed",
                }, separators=(",", ":")))
