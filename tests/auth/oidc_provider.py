"""A real OpenID Connect provider on loopback: npm ``oidc-provider`` run with Node (tests/auth/oidc/).

:class:`OidcProvider` writes the provider's configuration (clients, accounts, its RSA signing key
as a JWKS), starts ``node provider.mjs`` on a free port and waits for its discovery document.
:meth:`OidcProvider.mint` signs a token with the provider's own key (the key its JWKS publishes),
for the workload-identity refusal cases. :func:`browser_login` drives the authorization code
flow as a browser would: follow redirects, submit the login form and the consent form.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.cluster import free_port

HERE = Path(__file__).resolve().parent / "oidc"
NODE = shutil.which("node") or "/usr/bin/node"
ACCOUNTS = {
    "olga": {"email": "olga@example.org", "email_verified": True, "preferred_username": "olga",
             "name": "Olga", "groups": ["platform", "readers"]},
    "piet": {"email": "piet@example.org", "email_verified": True, "preferred_username": "piet",
             "name": "Piet", "groups": ["readers"]},
}


def rsa_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return key, jwk


class OidcProvider:
    def __init__(self, d: Path, clients: list[dict[str, Any]], *, code_ttl: int = 60) -> None:
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=HERE, check=True,
                           capture_output=True, timeout=300)
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.kid = "test-key-1"
        self.key, jwk = rsa_jwk(self.kid)
        self.config_path = d / "oidc-provider.json"
        self.config_path.write_text(json.dumps({
            "port": self.port, "issuer": self.issuer, "jwks": {"keys": [jwk]}, "clients": clients,
            "accounts": ACCOUNTS, "codeTtl": code_ttl}))
        self.config_path.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OidcProvider:
        log = open(self.dir / "oidc-provider.log", "ab")
        self.process = subprocess.Popen([NODE, str(HERE / "provider.mjs"), str(self.config_path)], cwd=HERE,
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"oidc-provider did not start: {(self.dir / 'oidc-provider.log').read_text()}")
            time.sleep(0.1)

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def mint(self, *, key: Any = None, kid: str | None = None, **claims: Any) -> str:
        """An ID token signed with the provider's key (or ``key``), defaults overridable by ``claims``."""
        now = int(time.time())
        body = {"iss": self.issuer, "sub": "repo:acme/app:ref:refs/heads/main", "aud": "shardreg",
                "iat": now, "nbf": now - 1, "exp": now + 300, "jti": uuid.uuid4().hex, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_INPUT = re.compile(r'<input([^>]*)>')
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def submit_form(provider: httpx.Client, page: httpx.Response, fields: dict[str, str]) -> httpx.Response:
    """Submit the first form of ``page`` with its hidden inputs plus ``fields``."""
    match = _FORM.search(page.text)
    assert match, f"no form in the provider's page: {page.text[:500]}"
    action, inner = match.groups()
    data = {}
    for attrs in _INPUT.findall(inner):
        found = dict(_ATTR.findall(attrs))
        if "name" in found:
            data[found["name"]] = found.get("value", "")
    data.update(fields)
    return provider.post(urljoin(str(page.url), action), data=data)


def browser_login(provider: httpx.Client, authorize_url: str, user: str, password: str = "any") -> str:
    """Follow the provider's pages from ``authorize_url`` to the redirect back to the client;
    returns that redirect's URL (the client's callback with ``code`` and ``state``)."""
    url = authorize_url
    for _ in range(20):
        r = provider.get(url)
        while r.status_code in (302, 303):
            location = urljoin(str(r.url), r.headers["location"])
            if not location.startswith(str(provider.base_url).rstrip("/")):
                return location
            r = provider.get(location)
        assert r.status_code == 200, f"{r.status_code} from the provider: {r.text[:300]}"
        if 'name="login"' in r.text:
            r = submit_form(provider, r, {"login": user, "password": password})
        else:  # the consent page
            r = submit_form(provider, r, {})
        if r.status_code in (302, 303):
            location = urljoin(str(r.url), r.headers["location"])
            if not location.startswith(str(provider.base_url).rstrip("/")):
                return location
            url = location
            continue
        raise AssertionError(f"unexpected provider answer {r.status_code}: {r.text[:300]}")
    raise AssertionError("too many provider pages")
