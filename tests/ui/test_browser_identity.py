"""The web UI meets LDAP and OpenID login (issues 14 and 15), in a real headless Chromium.

One cluster (processes) with the UI, htpasswd, a real slapd (tests/auth/slapd.py) and a real
OpenID provider (npm oidc-provider, tests/auth/oidc_provider.py). The registry is browsed at
``http://localhost:<port>`` and the provider answers at ``http://127.0.0.1:<port>``: two sites,
as in a real deployment, so the browser applies its SameSite rules to the session cookie after
the provider sends it back.

(a) the provider's button on the login page → the provider's login and consent forms → back on
the UI as that user, seeing only what the ID token's groups may read → an API key made on the
user page works with skopeo (with those groups). (b) an LDAP user logs in with the UI's password
form and sees what the LDAP group's policy allows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.auth.conftest import basic, write_htpasswd
from tests.auth.oidc_provider import OidcProvider
from tests.auth.slapd import LDAP_USERS, Slapd
from tests.auth.test_ldap import ldap_config
from tests.cluster import Cluster, free_port
from tests.extensions.fixtures import push_image
from tests.ui.browser import Watched, browsing
from tests.ui.test_browser import SKOPEO, browser, repos_on

__all__ = ["browser"]  # the module's Chromium (tests/ui/test_browser.py's fixture)

ALL = ["read", "create", "update", "delete"]
ACCESS: dict[str, Any] = {
    "repositories": {
        "**": {"policies": [], "anonymousPolicy": []},
        "platform/**": {"policies": [{"groups": ["platform"], "actions": ["read", "create"]}]},  # OpenID group
        "readers/**": {"policies": [{"groups": ["readers"], "actions": ["read"]}]},              # OpenID group
        "dev/**": {"policies": [{"groups": ["developers"], "actions": ["read", "create"]}]},    # LDAP group
    },
    "adminPolicy": {"users": ["root"], "actions": ALL},
}
REPOS = ("platform/app", "readers/docs", "dev/tool", "secret/db")


class Site:
    def __init__(self, cluster: Cluster, url: str, provider: OidcProvider) -> None:
        self.cluster, self.url, self.provider = cluster, url, provider
        self.host = url.split("//")[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("ui-identity")
    port = free_port()
    url = f"http://localhost:{port}"
    client = {"client_id": "shardreg-ui", "client_secret": "ui-identity-secret-5e2", "grant_types": ["authorization_code"],
              "response_types": ["code"], "redirect_uris": [f"{url}/zot/auth/callback/oidc"]}
    slapd = Slapd(root / "slapd").start().load()
    provider = OidcProvider(root / "oidc", [client])
    try:
        provider.start()
        creds = root / "oidc-credentials.json"
        creds.write_text(json.dumps({"clientid": client["client_id"], "clientsecret": client["client_secret"]}))
        creds.chmod(0o600)
        config = {"http": {"externalUrl": url, "accessControl": ACCESS, "auth": {
            "htpasswd": {"path": str(write_htpasswd(root / "htpasswd"))},
            "ldap": ldap_config(slapd, root)["http"]["auth"]["ldap"],
            "apikey": True, "failLimit": 1000, "sessionSecret": "0123456789abcdef-ui-identity",
            "openid": {"providers": {"oidc": {
                "name": "Test SSO", "issuer": provider.issuer, "credentialsFile": str(creds),
                "scopes": ["openid", "profile", "email", "groups"],
                "claimMapping": {"username": "preferred_username", "groups": "groups"}}}}}},
            "extensions": {"search": {"enable": True}, "ui": {"enable": True}, "mgmt": {"enable": True}}}
        with Cluster(root / "data", shards=2, workers=1, config=config, port=port) as cluster:
            with httpx.Client(base_url=cluster.url, headers=basic("root"), timeout=60) as admin:
                for repo in REPOS:
                    push_image(admin, repo, "v1")
            yield Site(cluster, url, provider)
    finally:
        provider.stop()
        slapd.stop()


def forgive(b: Watched, url: str) -> None:
    """Drop the console errors of pages at ``url``: the provider's development pages (their web
    fonts and icon are not reachable here), or a page expected to answer 404. Every other page
    of the UI must still log none."""
    b.errors[:] = [e for e in b.errors if not e.startswith(url)]


def skopeo(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
    return subprocess.run([SKOPEO, "--insecure-policy", *argv], capture_output=True, text=True, timeout=60, env=env)


def test_openid_login_in_the_browser_then_an_api_key_for_skopeo(site: Site, browser: Browser,
                                                                 tmp_path: Path) -> None:
    with browsing(browser, site.url) as b:
        page = b.page
        page.goto("/ui/login")
        page.get_by_role("link", name="Sign in with Test SSO").click()
        page.wait_for_url(re.compile("^" + re.escape(site.provider.issuer) + "/interaction/"))
        page.locator("input[name=login]").fill("olga")            # the provider's own login form
        page.locator("input[name=password]").fill("any")
        page.locator("button[type=submit]").click()
        page.wait_for_url(re.compile("^" + re.escape(site.provider.issuer) + "/interaction/"))
        expect(page.locator("button[type=submit]")).to_have_text(re.compile("Continue"))  # the consent form
        page.locator("button[type=submit]").click()
        page.wait_for_url(f"{site.url}/")                          # callback_ui: the page the login left
        forgive(b, site.provider.issuer)
        expect(page.locator("header .user")).to_have_text("olga")
        assert repos_on(page) == {"platform/app", "readers/docs"}  # groups platform and readers only
        page.goto("/ui/repo/dev/tool/tags")
        expect(page.locator("main")).to_contain_text("No such repository.")  # not even its name
        forgive(b, f"{site.url}/ui/repo/dev/tool/tags")

        page.goto("/")
        page.get_by_role("link", name="olga").click()
        page.get_by_label("Label").fill("ci")
        page.get_by_role("button", name="Create key").click()
        key = page.locator("#new-key").input_value()
        assert re.fullmatch(r"zak_[0-9a-f]{32}", key)

    # the key carries olga's OpenID groups: push where the group platform may create, not elsewhere
    src, creds = f"docker://{site.host}/platform/app:v1", f"olga:{key}"
    copy = skopeo(tmp_path, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", creds,
                  "--dest-creds", creds, src, f"docker://{site.host}/platform/copied:v1")
    assert copy.returncode == 0, copy.stderr
    assert skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                  f"docker://{site.host}/readers/docs:v1").returncode == 0
    refused = skopeo(tmp_path, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", creds,
                     "--dest-creds", creds, src, f"docker://{site.host}/readers/copied:v1")
    assert refused.returncode != 0 and "denied" in refused.stderr.lower(), refused.stderr


def test_ldap_user_logs_in_with_the_password_form(site: Site, browser: Browser) -> None:
    with browsing(browser, site.url) as b:
        page = b.page
        page.goto("/ui/login")
        page.get_by_label("Username").fill("lena")
        page.get_by_label("Password").fill(LDAP_USERS["lena"])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{site.url}/")
        expect(page.locator("header .user")).to_have_text("lena")
        assert repos_on(page) == {"dev/tool"}                      # LDAP group developers
        page.goto("/ui/repo/dev/tool/tags")                        # the session holds on the next pages
        expect(page.get_by_role("link", name="v1", exact=True)).to_be_visible()
        page.goto("/ui/repo/platform/app/tags")
        expect(page.locator("main")).to_contain_text("No such repository.")  # not even its name
        forgive(b, f"{site.url}/ui/repo/platform/app/tags")
        page.goto("/ui/user")                                      # still logged in (LDAP re-checked)
        expect(page.locator("header .user")).to_have_text("lena")
