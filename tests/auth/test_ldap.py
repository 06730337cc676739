"""LDAP logins (``http.auth.ldap``) against a real OpenLDAP slapd on loopback.

In process: users and groups (short names and DNs) through accessControl, the disabled user,
the bind cache (successes kept, failures never), a removed user losing password, API key and
session within ``cacheTime``, slapd down or hung → 503 while htpasswd users keep working, and
the directory over StartTLS and LDAPS with a CA file. With real processes: skopeo login, push
and pull as an LDAP user over StartTLS.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config.identity import LdapSettings
from gateway.auth.ldap import LdapDirectory, LdapUnavailable
from tests.auth.conftest import basic, write_htpasswd
from tests.auth.helpers import try_push
from tests.auth.slapd import BASE, LDAP_USERS, SEARCHER_DN, SEARCHER_PW, Slapd
from tests.inprocess import InProcessRegistry

DEVELOPERS_DN = f"cn=developers,ou=Groups,{BASE}"
ACCESS: dict[str, Any] = {
    "repositories": {
        "**": {"policies": [{"users": ["lena"], "actions": ["read", "create"]}], "defaultPolicy": ["read"]},
        "dev/**": {"policies": [{"groups": ["developers"], "actions": ["read", "create", "update"]}]},
        "dn/**": {"policies": [{"groups": [f"cn=ldap-group,ou=Groups,{BASE}"], "actions": ["read", "create"]}]},
        "bob-only/**": {"policies": [{"users": ["bob"], "actions": ["read", "create"]}]},
    },
    "adminPolicy": {"groups": ["admins"], "actions": ["read", "create", "update", "delete"]},
}


def ldap_basic(user: str, password: str | None = None) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(
        f"{user}:{LDAP_USERS[user] if password is None else password}".encode()).decode()}


def ldap_config(slapd: Slapd, d: Path, *, cache: str = "5m", **extra: Any) -> dict[str, Any]:
    creds = d / "ldap-credentials.json"
    creds.write_text(json.dumps({"bindDN": SEARCHER_DN, "bindPassword": SEARCHER_PW}))
    creds.chmod(0o600)
    ldap = {"credentialsFile": str(creds), "address": "127.0.0.1", "port": slapd.port, "insecure": True,
            "startTLS": False, "baseDN": f"ou=Users,{BASE}", "userAttribute": "uid",
            "userFilter": "(!(employeeType=disabled))", "userGroupAttribute": "memberOf",
            "skipVerify": False, "subtreeSearch": True, "cacheTime": cache, "timeout": "1s", **extra}
    return {"http": {"auth": {"htpasswd": {"path": str(write_htpasswd(d / "htpasswd"))}, "ldap": ldap,
                              "apikey": True, "failLimit": 1000, "sessionSecret": "0123456789abcdef-ldap"},
                     "accessControl": ACCESS}}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd")).start().load()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ldap_client(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    config = ldap_config(slapd, tmp_path_factory.mktemp("ldap-reg"))
    with InProcessRegistry(config=config) as registry, registry.client() as client:
        yield client


def test_users_and_groups_go_through_access_control(ldap_client: httpx.Client) -> None:
    c = ldap_client
    lena, nina, mark = ldap_basic("lena"), ldap_basic("nina"), ldap_basic("mark")
    assert c.get("/v2/", headers=lena).status_code == 200
    assert try_push(c, "lena-app", "v1", lena) == 201            # policy by user name
    assert try_push(c, "dev/app", "v1", lena) == 201             # group short name (developers)
    assert try_push(c, "dn/app", "v1", nina) == 201              # group full DN
    assert try_push(c, "dn/app", "v2", lena) == 403
    assert try_push(c, "dev/app", "v2", nina) == 403
    assert try_push(c, "bob-only/x", "v1", lena) == 403
    # adminPolicy names the LDAP group "admins": mark may do anything anywhere
    assert try_push(c, "bob-only/x", "v2", mark) == 201
    # htpasswd users keep working next to LDAP
    assert try_push(c, "bob-only/x", "v1", basic("bob")) == 201


def test_wrong_password_disabled_and_unknown_users_are_refused(ldap_client: httpx.Client) -> None:
    c = ldap_client
    assert c.get("/v2/", headers=ldap_basic("lena", "not-the-password")).status_code == 401
    assert c.get("/v2/", headers=ldap_basic("dora")).status_code == 401      # employeeType=disabled
    assert c.get("/v2/", headers=ldap_basic("nobody", "whatever")).status_code == 401
    assert c.get("/v2/", headers=ldap_basic("lena", "")).status_code == 401  # never an unauthenticated bind
    # a filter injection attempt is only a strange user name
    assert c.get("/v2/", headers=ldap_basic("*)(uid=*", "x")).status_code == 401


def test_successful_binds_are_cached_failures_are_not(ldap_client: httpx.Client, slapd: Slapd) -> None:
    c = ldap_client
    old, new, newer = LDAP_USERS["nina"], "nina-new-Pw-1", "nina-newer-Pw-2"
    assert c.get("/v2/", headers=ldap_basic("nina", old)).status_code == 200
    set_password(slapd, "nina", new)
    # the cached success: the old password is still accepted within cacheTime (5m here)
    assert c.get("/v2/", headers=ldap_basic("nina", old)).status_code == 200
    assert c.get("/v2/", headers=ldap_basic("nina", new)).status_code == 200
    # a failure is never remembered: refused, then accepted once LDAP has it
    assert c.get("/v2/", headers=ldap_basic("nina", newer)).status_code == 401
    set_password(slapd, "nina", newer)
    assert c.get("/v2/", headers=ldap_basic("nina", newer)).status_code == 200
    set_password(slapd, "nina", old)


def set_password(slapd: Slapd, user: str, password: str) -> None:
    slapd.modify(f"dn: uid={user},ou=Users,{BASE}\nchangetype: modify\nreplace: userPassword\n"
                 f"userPassword: {password}\n")


def test_removed_or_disabled_user_loses_key_and_session_within_cache_time(
        slapd: Slapd, tmp_path: Path) -> None:
    with InProcessRegistry(config=ldap_config(slapd, tmp_path, cache="1s")) as registry, registry.client() as c:
        gone = ldap_basic("gone")
        r = c.post("/zot/auth/apikey", json={"label": "ci"}, headers=gone)
        assert r.status_code == 201, r.text
        key = r.json()["apiKey"]
        r = c.post("/zot/auth/login", headers=gone)
        assert r.status_code == 200
        cookie = r.cookies["session"]
        key_auth = ldap_basic("gone", key)
        session = {"Cookie": f"session={cookie}"}
        assert c.get("/v2/", headers=key_auth).status_code == 200
        assert c.get("/v2/", headers=session).status_code == 200
        # the groups of an LDAP user's key come from LDAP too
        assert try_push(c, "dev/by-key", "v1", key_auth) == 201
        lena_session = {"Cookie": "session=" + c.post("/zot/auth/login", headers=ldap_basic("lena")).cookies["session"]}
        slapd.modify(f"dn: uid=gone,ou=Users,{BASE}\nchangetype: delete\n")
        slapd.modify(f"dn: uid=lena,ou=Users,{BASE}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n")
        try:
            deadline = time.monotonic() + 30   # cacheTime is 1s: each entry is searched again after it
            while time.monotonic() < deadline and 200 in (c.get("/v2/", headers=key_auth).status_code,
                                                          c.get("/v2/", headers=lena_session).status_code):
                time.sleep(0.2)
            assert c.get("/v2/", headers=key_auth).status_code == 401
            assert c.get("/v2/", headers=session).status_code == 401
            assert c.get("/v2/", headers=gone).status_code == 401
            assert c.get("/v2/", headers=lena_session).status_code == 401   # disabled: no longer matches userFilter
        finally:
            slapd.modify(f"dn: uid=lena,ou=Users,{BASE}\nchangetype: modify\ndelete: employeeType\n")


def test_server_down_or_hung_gives_503_and_htpasswd_users_keep_working(tmp_path: Path) -> None:
    server = Slapd(tmp_path / "slapd").start().load()
    try:
        with InProcessRegistry(config=ldap_config(server, tmp_path, cache="0s", timeout="2s")) as registry, \
                registry.client(timeout=30) as c, registry.client(timeout=30) as other:
            assert c.get("/v2/", headers=ldap_basic("lena")).status_code == 200
            # a restart closes the pooled connections: the next login reconnects, no error
            server.stop()
            server.start()
            assert c.get("/v2/", headers=ldap_basic("lena")).status_code == 200
            server.pause()  # accepts connections, never answers: bounded by the LDAP timeout (2s here)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                hung = pool.submit(other.get, "/v2/", headers=ldap_basic("lena"))
                time.sleep(0.3)
                # the hung bind waits in an LDAP thread: the event loop keeps serving everyone else
                assert c.get("/v2/", headers=basic("bob")).status_code == 200
                assert not hung.done()
                r = hung.result()
            assert r.status_code == 503 and r.headers["Retry-After"]
            assert "LDAP" in r.text
            assert c.get("/v2/", headers=basic("bob")).status_code == 200
            server.stop()   # connection refused
            time.sleep(2.1)  # past the back-off: the next call really tries the (dead) server
            assert c.get("/v2/", headers=ldap_basic("lena")).status_code == 503
            assert c.get("/v2/", headers=ldap_basic("lena")).status_code == 503   # inside the back-off
            assert c.get("/v2/", headers=basic("alice")).status_code == 200
            assert c.get("/v2/", headers=basic("alice", "wrong")).status_code == 401   # htpasswd user: never LDAP
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_directory_over_starttls_and_ldaps_with_a_ca_file(slapd: Slapd, mode: str, tmp_path: Path) -> None:
    def settings(ca: str | None) -> LdapSettings:
        return LdapSettings(address="127.0.0.1", port=slapd.port if mode == "starttls" else slapd.ssl_port,
                            base_dn=f"ou=Users,{BASE}", insecure=mode == "starttls", start_tls=True, ca_cert=ca,
                            user_group_attribute="memberOf", subtree_search=True, bind_dn=SEARCHER_DN,
                            bind_password=SEARCHER_PW, timeout=2)

    async def check(directory: LdapDirectory) -> Any:
        try:
            return (await directory.authenticate("lena", LDAP_USERS["lena"]),
                    await directory.authenticate("lena", "wrong"))
        finally:
            directory.close()

    good, bad = asyncio.run(check(LdapDirectory(settings(str(slapd.ca)))))
    assert good == {"developers", DEVELOPERS_DN} and bad is None
    # a server certificate the configured CA did not sign is refused (503, not a silent downgrade)
    other = tmp_path / "other"
    other.mkdir()
    from tests.auth.slapd import write_pki
    with pytest.raises(LdapUnavailable):
        asyncio.run(check(LdapDirectory(settings(str(write_pki(other)[0])))))
