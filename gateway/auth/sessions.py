"""Session cookies: ``POST /zot/auth/login`` opens one, ``POST /zot/auth/logout`` ends it.

The cookie is ``<user b64>.<session id>.<HMAC-SHA256>``: any gateway worker can check the
signature with the shared key, then confirms the session still exists on the user's shard — on
every request, never cached, so a logout is effective on every worker of every gateway as soon
as it has answered. The
signing key comes from, in order: ``http.auth.sessionKeysFile`` (zot's JSON with ``hashKey``),
``http.auth.sessionSecret``, or a random secret that shard 0 creates once and hands to every
gateway (so an embedded cluster needs no configuration).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from common import messages
from common.config import AuthSettings, ConfigError
from gateway.shard_client import ShardClient

COOKIE = "session"
#: Longest JSON list of groups carried in a session cookie.
MAX_GROUPS_JSON = 2048
_CONTEXT = b"shardreg session cookie v1"


def _derive(secret: bytes) -> bytes:
    return hmac.new(_CONTEXT, secret, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def configured_key(settings: AuthSettings) -> bytes | None:
    if settings.session_keys_file:
        try:
            data = json.loads(Path(settings.session_keys_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"http.auth.sessionKeysFile: cannot read {settings.session_keys_file}: {exc}") from None
        hash_key = data.get("hashKey") if isinstance(data, dict) else None
        if not isinstance(hash_key, str) or len(hash_key) < 16:
            raise ConfigError("http.auth.sessionKeysFile: hashKey (at least 16 characters) is required")
        return _derive(hash_key.encode())
    if settings.session_secret:
        if len(settings.session_secret) < 16:
            raise ConfigError("http.auth.sessionSecret: use at least 16 characters")
        return _derive(settings.session_secret.encode())
    return None


class Sessions:
    def __init__(self, settings: AuthSettings, client: Callable[[], ShardClient]) -> None:
        self.settings = settings
        self.client = client
        self._key = configured_key(settings)

    async def key(self) -> bytes:
        if self._key is None:
            reply = await self.client().call(0, messages.SECRET_GET({"name": "session"}))
            self._key = _derive(bytes(reply.result["secret"]))
        return self._key

    def _sign(self, key: bytes, user_b64: str, sid: str) -> str:
        return _b64(hmac.new(key, f"{user_b64}.{sid}".encode(), hashlib.sha256).digest())

    async def open(self, user: str, origin: str = "htpasswd", groups: frozenset[str] = frozenset()) -> str:
        """Create a session; returns the cookie value. ``origin`` (where the user is known) is
        part of the signed session id (``<origin>~<random>``; none for htpasswd); ``groups``
        (an OpenID login's, from its ID token) ride in the signed cookie."""
        sid = secrets.token_urlsafe(24)
        if origin != "htpasswd":
            sid = f"{origin}~{sid}"
        expires = time.time() + self.settings.session_timeout
        await self.client().call_user(user, messages.SESSION_CREATE({"user": user, "sid": sid, "expires": expires}))
        name = user.encode()
        kept: list[str] = []
        for group in sorted(groups):  # bounded: the cookie must stay well under 4 KiB
            if len(json.dumps(kept + [group])) > MAX_GROUPS_JSON:
                break
            kept.append(group)
        if kept:
            name += b"\0" + json.dumps(kept).encode()
        user_b64 = _b64(name)
        return f"{user_b64}.{sid}.{self._sign(await self.key(), user_b64, sid)}"

    async def _parse(self, cookie: str) -> tuple[str, str] | None:
        parts = cookie.split(".")
        if len(parts) != 3 or len(cookie) > 4000:
            return None
        user_b64, sid, mac = parts
        if not hmac.compare_digest(mac, self._sign(await self.key(), user_b64, sid)):
            return None
        try:
            return _unb64(user_b64).decode(), sid
        except (binascii.Error, UnicodeDecodeError):
            return None

    async def user(self, cookie: str) -> str | None:
        """The user of a live session cookie, or None."""
        found = await self.lookup(cookie)
        return found[0] if found else None

    async def lookup(self, cookie: str) -> tuple[str, str, frozenset[str]] | None:
        """(user, origin, groups) of a live session cookie, or None."""
        parsed = await self._parse(cookie)
        if parsed is None:
            return None
        user, sid = parsed
        user, _, extra = user.partition("\0")
        try:
            groups = frozenset(str(g) for g in json.loads(extra)) if extra else frozenset()
        except (ValueError, TypeError):
            return None
        reply = await self.client().call_user(user, messages.SESSION_GET({"sid": sid, "user": user}))
        record = reply.result["session"]
        if not record or record["user"] != user:
            return None
        origin, sep, _ = sid.partition("~")
        return user, origin if sep else "htpasswd", groups

    async def close(self, cookie: str) -> bool:
        parsed = await self._parse(cookie)
        if parsed is None:
            return False
        user, sid = parsed
        reply = await self.client().call_user(user, messages.SESSION_DELETE({"sid": sid, "user": user}))
        return bool(reply.result["deleted"])

    def cookie_header(self, value: str, max_age: int | None = None) -> str:
        age = int(self.settings.session_timeout) if max_age is None else max_age
        secure = "; Secure" if self.settings.secure_session else ""
        return f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"


def cookie_value(header: str | None) -> str | None:
    """The ``session`` cookie out of a ``Cookie`` header."""
    if not header:
        return None
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE and value:
            return value.strip('"')
    return None
