"""Who is calling: the :class:`Identity` every authorization decision is about."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from werkzeug.datastructures import Headers

#: Request headers: Quart's case-insensitive ``Headers``, or a plain dict with lower-case keys.
HeaderMap = Mapping[str, str] | Headers


@dataclass(frozen=True)
class Identity:
    name: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    #: How the caller proved who they are: anonymous, htpasswd, apikey, session, bearer, mtls.
    via: str = "anonymous"
    #: Repositories (names or globs) an API key is limited to; None = no limit.
    scopes: tuple[str, ...] | None = None
    #: Bearer tokens: repository → actions granted by the token.
    grants: Mapping[str, frozenset[str]] | None = None
    #: Bearer tokens: registry:catalog:* granted.
    catalog: bool = False
    #: Bearer tokens signed by this registry's own issuer (then the policy still applies).
    issued_here: bool = False
    key_id: str | None = None
    #: Where the user is known: htpasswd, ldap, openid, workload, mtls (bearer tokens issued here:
    #: how the subject proved who they were). For API keys and sessions it is recorded when they
    #: are created; None (older records) counts as htpasswd.
    origin: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None

    @property
    def limited(self) -> bool:
        """A credential limited to some repositories (a scoped API key, any bearer token): never admin."""
        return self.scopes is not None or self.via == "bearer"


ANONYMOUS = Identity()


def header(headers: HeaderMap, name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getlist"):  # a plain dict not lower-cased
        for k, v in headers.items():
            if k.lower() == name:
                return v
    return value
