"""The shard's read filter (common.readfilter.may_read on AccessControl's read filter) decides
exactly what the gateway's one decision point decides for "read", for a table of callers,
policies and names (issue 17: listings are filtered at the shards)."""

from __future__ import annotations

import asyncio
import base64
import itertools

import bcrypt
import pytest

from common.config import parse_config
from common.errors import RegistryError
from common.readfilter import Reader, may_read, name_prefixes
from gateway.auth.access import AccessControl
from gateway.auth.identity import Identity
from gateway.auth.readgrant import read_filter

NAMES = ["a", "app", "team-a/app", "team-a/lib/x", "team-a", "team-b/app", "public/base", "public/a/b",
         "secret/db", "x/secret/db", "lib", "libs/one", "mirror/docker.io/library/alpine", "team-a/app2"]
POLICIES = {
    "specific": {
        "repositories": {
            "**": {"policies": [{"users": ["bob"], "actions": ["read"]}], "defaultPolicy": []},
            "team-a/**": {"policies": [{"users": ["alice"], "groups": ["devs"], "actions": ["read", "create"]}]},
            "team-a/app": {"policies": [{"users": ["carol"], "actions": ["read"]}], "defaultPolicy": []},
            "public/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
            "*": {"defaultPolicy": ["read"], "policies": [{"users": ["bob"], "actions": ["create"]}]},
            "secret/*": {"policies": [{"users": ["bob"], "actions": ["delete"]}]},
            "**/db": {"anonymousPolicy": ["read"]},
            "lib?": {"policies": [{"groups": ["ops"], "actions": ["read"]}]},
        },
        "adminPolicy": {"users": ["admin"], "groups": ["root"], "actions": ["read", "delete"]},
        "groups": {"devs": {"users": ["dave"]}, "ops": {"users": ["olga"]}},
    },
    "no-catch-all": {
        "repositories": {"team-a/**": {"defaultPolicy": ["read"]}, "**/app": {"anonymousPolicy": ["read"]}},
        "adminPolicy": {"users": ["admin"], "actions": ["read"]},
    },
    "admin-no-read": {
        "repositories": {"team-a/**": {"policies": [{"users": ["alice"], "actions": ["read"]}]}},
        "adminPolicy": {"users": ["admin"], "actions": ["delete"]},
    },
    "everyone-reads": {"repositories": {"**": {"defaultPolicy": ["read"], "anonymousPolicy": ["read"]}}},
    "none": None,
}
USERS = [None, "alice", "bob", "carol", "dave", "olga", "admin", "mallory"]


def _access(tmp_path, policy: dict | None, auth: bool = True) -> AccessControl:
    http: dict = {}
    if auth:
        htpasswd = tmp_path / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(b'pw-' + u.encode(), bcrypt.gensalt(4)).decode()}\n"
                                    for u in USERS if u))
        http["auth"] = {"htpasswd": {"path": str(htpasswd)}}
    if policy is not None:
        http["accessControl"] = policy
    return AccessControl(parse_config({"http": http}))


def _identities(access: AccessControl) -> list[Identity]:
    out = []
    for user in USERS:
        groups = access.policy.groups_of(user) if user else frozenset()
        out.append(Identity(name=user, groups=groups, via="htpasswd" if user else "anonymous"))
        if user:
            out.append(Identity(name=user, groups=groups | {"root"}, via="htpasswd"))
            out.append(Identity(name=user, groups=groups, via="apikey", scopes=("team-a/**", "lib?")))
            grants = {"team-a/app": frozenset({"read"}), "secret/db": frozenset({"read", "create"}),
                      "public/base": frozenset({"create"})}
            out.append(Identity(name=user, groups=groups, via="bearer", grants=grants, issued_here=True))
            out.append(Identity(name=user, groups=groups, via="bearer", grants=grants, issued_here=False))
    out.append(Identity(name=None, via="bearer", grants={"public/base": frozenset({"read"})}, issued_here=True))
    return out


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("auth", [True, False])
def test_the_shard_filter_decides_as_the_gateway(tmp_path, policy, auth):
    access = _access(tmp_path, POLICIES[policy], auth)
    checked = restricted = 0
    for identity in _identities(access):
        flt = read_filter(access, identity)
        reader = Reader(flt)
        prefixes = name_prefixes(flt)
        for name in NAMES:
            expected = access.can_read(identity, name)
            assert may_read(flt, name) == expected, (policy, identity, name, flt)
            assert reader(name) == expected
            if expected and prefixes is not None:  # a shard counting only these ranges misses no readable name
                assert any(name.startswith(p) for p in prefixes), (policy, identity, name, prefixes)
            checked += 1
        if prefixes is not None:
            restricted += 1
            assert prefixes == sorted(prefixes) and not any(
                b.startswith(a) for a, b in itertools.combinations(prefixes, 2)), prefixes
    assert checked >= len(NAMES) * 10
    if policy == "specific" and auth:
        assert restricted >= 3  # the filters of partial-access callers do narrow the walk


def test_the_filter_equals_authorize_for_password_callers(tmp_path):
    """Through the decision point itself (authentication included), for the most specific policy."""
    access = _access(tmp_path, POLICIES["specific"])
    outcomes = set()
    for user, name in itertools.product(USERS, NAMES):
        headers = {"authorization": "Basic " + base64.b64encode(f"{user}:pw-{user}".encode()).decode()} if user else {}
        identity = Identity(name=user, groups=access.policy.groups_of(user) if user else frozenset(),
                            via="htpasswd" if user else "anonymous")
        try:
            asyncio.run(access.authorize(headers, name, "read"))
            allowed = True
        except RegistryError:
            allowed = False
        assert may_read(read_filter(access, identity), name) == allowed, (user, name)
        outcomes.add(allowed)
    assert outcomes == {True, False}
