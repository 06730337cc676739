"""zot's ldap / openid / bearer.oidc configs are accepted unchanged, and bad ones are refused by key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from common.cli import main
from common.config import ConfigError, parse_config, redact
from common.logs import WARNED_ENV
from common.startup import check_files
from gateway.auth.ldap import group_names
from gateway.extensions.mgmt import stripped_auth


def zot_ldap(creds: str) -> dict[str, Any]:
    """The shape of zot's examples/config-ldap.json."""
    return {"http": {"address": "127.0.0.1", "port": "8080", "realm": "zot", "auth": {
        "ldap": {"credentialsFile": creds, "address": "ldap.example.org", "port": 389, "startTLS": False,
                 "baseDN": "ou=Users,dc=example,dc=org", "userAttribute": "uid",
                 "userFilter": "(!(nsaccountlock=TRUE))", "userGroupAttribute": "memberOf", "skipVerify": True,
                 "subtreeSearch": True},
        "failDelay": 5},
        "accessControl": {"repositories": {"**": {"policies": [{
            "users": ["charlie"], "groups": ["admins", "cn=ldap-group,ou=Groups,dc=example,dc=org"],
            "actions": ["read", "create", "update"]}], "defaultPolicy": []}},
            "adminPolicy": {"users": ["admin"], "groups": ["admins"], "actions": ["read"]}}}}


def zot_openid(d: Path) -> dict[str, Any]:
    """The shape of zot's examples/config-openid.json (four providers, credentials files)."""
    creds = d / "creds.json"
    creds.write_text(json.dumps({"clientid": "client_id", "clientsecret": "client_secret"}))
    return {"http": {"externalUrl": "http://127.0.0.1:8080", "auth": {
        "htpasswd": {"path": "/x"}, "sessionKeysFile": "/keys.json", "apikey": True, "failDelay": 5,
        "openid": {"callbackAllowOrigins": ["http://127.0.0.1:3000"], "providers": {
            "github": {"credentialsFile": str(creds), "keypath": "", "scopes": ["read:org", "user", "repo"]},
            "google": {"credentialsFile": str(creds), "issuer": "https://accounts.google.com",
                       "scopes": ["openid", "email"]},
            "gitlab": {"issuer": "https://gitlab.com", "credentialsFile": str(creds),
                       "scopes": ["openid", "read_api", "read_user", "profile", "email"]},
            "oidc": {"name": "Corporate SSO", "issuer": "http://127.0.0.1:5556/dex", "credentialsFile": str(creds),
                     "scopes": ["openid", "user", "email", "groups"],
                     "claimMapping": {"username": "preferred_username", "groups": "groups"}}}}}}}


def test_zot_ldap_config_is_accepted_unchanged(tmp_path: Path) -> None:
    creds = tmp_path / "ldap-credentials.json"
    creds.write_text(json.dumps({"bindDN": "cn=ldap-searcher,ou=Users,dc=example,dc=org",
                                 "bindPassword": "ldap-searcher-password"}))
    config = parse_config(zot_ldap(str(creds)))
    assert config.warnings == ()
    ldap = config.http.auth.ldap
    assert ldap is not None and ldap.use_ssl and not ldap.start_tls and ldap.port == 389   # as zot: LDAPS
    assert ldap.subtree_search and ldap.user_group_attribute == "memberOf" and config.http.auth.enabled
    assert stripped_auth(config) == {"htpasswd": {}}   # zot's UI shows the password form
    check_files(config)   # the credentials file is read at start
    # the bind password is never in the effective config
    assert "ldap-searcher-password" not in json.dumps(redact(config.to_json()))


def test_zot_openid_configs_are_accepted_unchanged(tmp_path: Path) -> None:
    config = parse_config(zot_openid(tmp_path))
    assert config.warnings == ()
    openid = config.http.auth.openid
    assert openid is not None and set(openid.providers) == {"github", "google", "gitlab", "oidc"}
    assert openid.providers["oidc"].username_claim == "preferred_username"
    assert openid.providers["gitlab"].issuer == "https://gitlab.com" and openid.providers["github"].issuer is None
    assert openid.callback_allow_origins == ("http://127.0.0.1:3000",)
    assert config.http.auth.openid_providers["oidc"] == "Corporate SSO"
    again = parse_config(json.loads(json.dumps(config.to_json())))
    assert again.http.auth.openid == openid
    inline = parse_config({"http": {"auth": {"openid": {"providers": {"google": {
        "clientid": "c", "clientsecret": "topsecret", "scopes": ["openid", "email"]}}}}}})
    assert "topsecret" not in json.dumps(redact(inline.to_json()))
    assert inline.http.auth.openid is not None
    assert inline.http.auth.openid.providers["google"].issuer == "https://accounts.google.com"


def test_zot_workload_config_is_accepted_unchanged() -> None:
    config = parse_config({"http": {"auth": {"bearer": {"realm": "zot", "service": "zot-service", "oidc": [{
        "issuer": "https://kubernetes.default.svc.cluster.local", "audiences": ["zot", "https://zot.example.com"],
        "claimMapping": {"username": "claims.sub"}}]}},
        "accessControl": {"repositories": {"**": {"policies": [{
            "users": ["system:serviceaccount:flux-system:source-controller"], "actions": ["read"]}]}}}}})
    assert config.warnings == ()
    auth = config.http.auth
    assert auth.bearer is None and len(auth.workload) == 1 and auth.enabled   # no token server needed
    assert auth.workload[0].audiences == ("zot", "https://zot.example.com")
    check_files(config)
    default = parse_config({"http": {"auth": {"bearer": {"oidc": [{"issuer": "https://i", "audiences": ["a"]}]}}}})
    assert default.http.auth.workload[0].username == "claims.iss + '/' + claims.sub"


@pytest.mark.parametrize("auth, message", [
    ({"ldap": {"address": "ldap"}}, "http.auth.ldap.baseDN: required"),
    ({"ldap": {"baseDN": "dc=x"}}, "http.auth.ldap.address: required"),
    ({"ldap": {"address": "l", "baseDN": "dc=x", "port": 0}}, "http.auth.ldap.port"),
    ({"ldap": {"address": "l", "baseDN": "dc=x", "userFilter": "uid=*"}}, "http.auth.ldap.userFilter"),
    ({"openid": {"providers": {"oidc": {"clientid": "c"}}}}, "providers.oidc.issuer: required"),
    ({"openid": {"providers": {"oidc": {"issuer": "https://i"}}}}, "providers.oidc.clientid: required"),
    ({"openid": {"providers": {"oidc": {"issuer": "https://i", "clientid": "c", "scopes": ["email"]}}}},
     "must include \"openid\""),
    ({"openid": {"callbackAllowOrigins": ["http://x/path"], "providers": {"google": {"clientid": "c"}}}},
     "callbackAllowOrigins"),
    ({"bearer": {"oidc": [{"issuer": "https://i"}]}}, "http.auth.bearer.oidc[0].audiences"),
    ({"bearer": {"oidc": [{"audiences": ["a"]}]}}, "http.auth.bearer.oidc[0].issuer: required"),
])
def test_bad_identity_configs_name_the_key(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"http": {"auth": auth}})


def test_start_refuses_bad_cel_and_missing_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # main() runs in this process: keep its "warnings printed" mark out of the clusters later tests start
    monkeypatch.setenv(WARNED_ENV, "1")
    for auth, message in [
        ({"bearer": {"oidc": [{"issuer": "https://i", "audiences": ["a"], "claimMapping": {"username": "claims.("}}]}},
         "http.auth.bearer.oidc[0].claimMapping.username: invalid CEL expression"),
        ({"ldap": {"address": "l", "baseDN": "dc=x", "credentialsFile": str(tmp_path / "missing.json")}},
         "http.auth.ldap.credentialsFile: cannot read"),
    ]:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"http": {"auth": auth}}))
        assert main(["serve", "--config", str(path), "--data", str(tmp_path / "data")]) == 2
        assert message in capsys.readouterr().err


def test_ldap_group_values_give_dn_and_short_name() -> None:
    assert group_names([r"cn=caf\C3\A9,dc=x"]) == {r"cn=caf\C3\A9,dc=x", "café"}
    assert group_names(["cn=developers,ou=Groups,dc=example,dc=org", "plain-name", "",
                        r"cn=a\,b,ou=Groups,dc=x"]) == {
        "cn=developers,ou=Groups,dc=example,dc=org", "developers", "plain-name", r"cn=a\,b,ou=Groups,dc=x", "a,b"}
