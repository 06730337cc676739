"""Authentication to an upstream registry, as an ``httpx.Auth`` flow.

* No credentials asked for: the request goes out as it is (anonymous).
* ``WWW-Authenticate: Basic``: the credentials of ``credentialsFile`` for that host, then sent
  with every later request.
* ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` (the Docker token flow, as Docker Hub,
  ghcr.io and quay.io use): a token is asked of the realm (with Basic credentials when the file
  has some, anonymously otherwise), cached per scope until its ``expires_in`` ends, and sent as
  ``Authorization: Bearer``; later requests for the same repository send it at once.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Generator
from pathlib import Path

import httpx

from common import boundedjson

log = logging.getLogger("shardreg.sync")

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
#: The spec's default token lifetime when the token server names none (seconds).
DEFAULT_TOKEN_LIFETIME = 60.0
#: A token is renewed this long before it expires.
EXPIRY_MARGIN = 5.0


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` → ("bearer", {realm, service, …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def load_credentials(path: str) -> dict[str, tuple[str, str]]:
    """zot's credentials file: ``{"host[:port]": {"username": …, "password": …}}``."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of registries")
    out: dict[str, tuple[str, str]] = {}
    for host, entry in data.items():
        if isinstance(entry, dict):
            out[str(host)] = (str(entry.get("username", "")), str(entry.get("password", "")))
    return out


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


def _repo_scope(path: str) -> str:
    """The pull scope of a /v2/<name>/(manifests|blobs|tags|referrers)/… path ("" for others)."""
    match = re.match(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/", path)
    return f"repository:{match.group(1)}:pull" if match else ""


class RegistryAuth(httpx.Auth):
    """The auth state of one upstream URL (shared by all requests to it)."""

    def __init__(self, credentials: tuple[str, str] | None) -> None:
        self.credentials = credentials
        self.use_basic = False
        #: scope → (token, monotonic expiry)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.token_requests = 0

    def _preset(self, request: httpx.Request) -> None:
        cached = self.tokens.get(_repo_scope(request.url.path))
        if cached is not None and cached[1] > time.monotonic():
            request.headers["Authorization"] = f"Bearer {cached[0]}"
        elif self.use_basic and self.credentials:
            request.headers["Authorization"] = _basic(self.credentials)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the upstream client is asynchronous")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._preset(request)
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self.credentials:
                return
            self.use_basic = True
            request.headers["Authorization"] = _basic(self.credentials)
            yield request
            return
        if scheme != "bearer" or "realm" not in params:
            return
        scope = params.get("scope") or _repo_scope(request.url.path)
        query = {k: v for k, v in (("service", params.get("service", "")), ("scope", scope)) if v}
        token_request = httpx.Request("GET", params["realm"], params=query)
        if self.credentials:
            token_request.headers["Authorization"] = _basic(self.credentials)
        self.token_requests += 1
        token_response = yield token_request
        await token_response.aread()
        if token_response.status_code != 200:
            log.warning("sync: token service %s answered %d", params["realm"], token_response.status_code)
            return
        try:
            body = boundedjson.loads(token_response.content)
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            log.warning("sync: token service %s answered no token", params["realm"])
            return
        self.tokens[_repo_scope(request.url.path) or scope] = (token, time.monotonic() + max(0.0, lifetime - EXPIRY_MARGIN))
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
