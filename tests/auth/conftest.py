"""Fixtures for the auth suite: users, keys and one real cluster per auth configuration."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.cluster import Cluster

#: user -> password (bcrypt cost 4 keeps the suite fast).
USERS = {
    "root": "root-Pw-7c1e9a",      # adminPolicy: everything everywhere
    "alice": "alice-Pw-41b2f0",    # owns public/**, read elsewhere by default
    "bob": "bob-Pw-9d3a55",        # group team-a: read+create on team-a/**; read+update on team-a/updater
    "carol": "carol-Pw-0e8c13",    # everything on team-a/**, read on private/**
    "dave": "dave-Pw-5a7f62",      # no policy: defaultPolicy only
}

ACCESS_CONTROL: dict[str, Any] = {
    "repositories": {
        "**": {"policies": [], "defaultPolicy": ["read"], "anonymousPolicy": []},
        "public/**": {"policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]}],
                      "defaultPolicy": ["read"], "anonymousPolicy": ["read"]},
        "team-a/**": {"policies": [{"groups": ["team-a"], "actions": ["read", "create"]},
                                   {"users": ["carol"], "actions": ["read", "create", "update", "delete"]}]},
        "team-a/updater": {"policies": [{"users": ["bob"], "actions": ["read", "update"]}]},
        "private/**": {"policies": [{"users": ["carol"], "actions": ["read"]}]},
    },
    "groups": {"team-a": {"users": ["bob", "carol"]}},
    "adminPolicy": {"users": ["root"], "actions": ["read", "create", "update", "delete"]},
}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    password = USERS[user] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def write_htpasswd(path: Path) -> Path:
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}" for u, p in USERS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ec_key(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def write_rsa_cert(key_path: Path, cert_path: Path, common_name: str = "token-issuer") -> None:
    """An RSA key and a self-signed certificate for it (an 'external token server')."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(__import__("ipaddress").ip_address(
                                                            "127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="session")
def auth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("auth")
    write_htpasswd(d / "htpasswd")
    write_ec_key(d / "token-signing.pem")
    write_rsa_cert(d / "external.key", d / "external.crt")
    write_rsa_cert(d / "forger.key", d / "forger.crt")
    (d / "session-keys.json").write_text(json.dumps({"hashKey": "0123456789abcdef0123456789abcdef",
                                                     "encryptKey": "fedcba9876543210fedcba9876543210"}))
    return d


@pytest.fixture(scope="session")
def basic_cluster(auth_dir: Path) -> Iterator[Cluster]:
    """htpasswd + API keys + sessions (key from shard 0) + the access policy; debug logs."""
    config = {
        "http": {"auth": {"htpasswd": {"path": str(auth_dir / "htpasswd")}, "apikey": True,
                          "failDelay": 0.3, "failLimit": 1000},
                 "accessControl": ACCESS_CONTROL, "realm": "shardreg-test"},
        "log": {"level": "debug"},
    }
    with Cluster(auth_dir / "basic", config=config) as c:
        yield c


@pytest.fixture(scope="session")
def token_cluster(auth_dir: Path) -> Iterator[Cluster]:
    """Docker token auth: the built-in issuer (EC key) and an external one (RSA certificate)."""
    config = {
        "http": {"auth": {"htpasswd": {"path": str(auth_dir / "htpasswd")}, "apikey": True,
                          "bearer": {"service": "shardreg-test", "cert": str(auth_dir / "external.crt"),
                                     "key": str(auth_dir / "token-signing.pem"), "issuer": "test-issuer",
                                     "tokenExpiry": "5m"},
                          "sessionKeysFile": str(auth_dir / "session-keys.json"), "failLimit": 3},
                 "accessControl": ACCESS_CONTROL},
        "log": {"level": "debug"},
    }
    with Cluster(auth_dir / "token", config=config) as c:
        yield c


@pytest.fixture()
def anon(basic_cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=basic_cluster.url, timeout=30) as c:
        yield c


#: Every secret a test handed to or received from a cluster; test_zz_secrets greps the logs for them.
SECRETS: set[str] = set(USERS.values())


def remember(*secrets: str) -> None:
    SECRETS.update(s for s in secrets if s)
