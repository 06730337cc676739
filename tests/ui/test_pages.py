"""The UI at handler level, in process: what each user sees, the headers, the forms and their CSRF checks."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.extensions.fixtures import FULL_EXTENSIONS, Pushed, populate, push_image
from tests.inprocess import InProcessRegistry
from tests.oci import OCI_MANIFEST, descriptor, push_blob
from tests.ui.conftest import log_in
from tests.ui.support import USERS, Forms, basic, csrf_of

pytestmark = pytest.mark.inprocess

PAGES = ["/", "/ui/explore", "/ui/login", "/ui/repo/library/alpine/tags", "/ui/repo/library/alpine/tag/3.19"]


def _repos_linked(html: str) -> set[str]:
    return set(re.findall(r'href="/ui/repo/([a-z0-9._/-]+?)/tags"', html))


# -- headers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_the_security_headers_and_no_inline_script_or_style(anonymous: httpx.Client, path: str) -> None:
    r = anonymous.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S)
    assert scripts and all('src="/ui/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", r.text)  # no inline style nor event handler


def test_static_assets_are_served_from_the_package(anonymous: httpx.Client) -> None:
    home = anonymous.get("/").text
    css = re.search(r'href="(/ui/static/ui\.css\?v=\w+)"', home).group(1)
    r = anonymous.get(css)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in r.text
    assert r.headers["cache-control"] == "public, max-age=86400"
    js = anonymous.get("/ui/static/ui.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["cache-control"] == "no-cache"  # no version: revalidate
    for bad in ("/ui/static/nope.css", "/ui/static/..%2Fpages.py", "/ui/static/%2e%2e"):
        assert anonymous.get(bad).status_code == 404


# -- who sees what -------------------------------------------------------------------------------
def test_anonymous_browsing_shows_only_what_anonymous_users_may_read(anonymous: httpx.Client) -> None:
    home = anonymous.get("/")
    assert home.status_code == 200
    seen = _repos_linked(home.text) | _repos_linked(anonymous.get("/ui/explore").text)
    assert seen == {"library/alpine", "library/nginx"}
    assert "apps/web" not in anonymous.get("/ui/explore").text
    assert 'href="/ui/login?next=/"' in home.text  # a log-in link, no user menu
    assert anonymous.get("/ui/repo/apps/web/tags").status_code == 404
    assert anonymous.get("/ui/repo/apps/web/tag/v1").status_code == 404
    tags = anonymous.get("/ui/explore", params={"q": "apps/web:v"}).text
    assert "0 results" in tags and "/ui/repo/apps/web/" not in tags
    user = anonymous.get("/ui/user")
    assert user.status_code == 303 and user.headers["location"] == "/ui/login?next=/ui/user"


def test_a_user_who_may_read_some_repositories_sees_only_those(bob: httpx.Client, alice: httpx.Client) -> None:
    bobs = _repos_linked(bob.get("/").text) | _repos_linked(bob.get("/ui/explore").text)
    assert bobs == {"library/alpine", "library/nginx"}
    assert ">bob</a>" in bob.get("/").text
    for path in ("/ui/repo/apps/web/tags", "/ui/repo/multi/arch/tag/v2", "/ui/repo/signed/cosign-ok/tags"):
        r = bob.get(path)
        assert r.status_code == 404 and "multi-arch" not in r.text
    explore = bob.get("/ui/explore", params={"q": "arch"})
    assert "multi/arch" not in explore.text and "0 results" in explore.text
    alices = _repos_linked(alice.get("/ui/explore").text) | _repos_linked(
        alice.get("/ui/explore", params={"page": 2}).text) | _repos_linked(alice.get("/ui/explore", params={"page": 3}).text)
    assert {"library/alpine", "apps/web", "multi/arch", "artifacts/app", "signed/cosign-ok"} <= alices


def test_anonymous_browsing_off_sends_everyone_to_the_login_page(ui_closed: InProcessRegistry) -> None:
    with ui_closed.client() as anon:
        for path in ("/", "/ui/explore?q=alp", "/ui/repo/library/alpine/tags"):
            r = anon.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/ui/login?next=/"), r.headers["location"]
        login = anon.get("/ui/login")
        assert login.status_code == 200 and 'id="login-form"' in login.text
        assert "/zot/auth/login?provider=" not in login.text  # no OpenID configured here
    with log_in(ui_closed, "bob") as bob:
        assert _repos_linked(bob.get("/").text) == {"library/alpine"}


# -- log in and out ------------------------------------------------------------------------------
def test_login_form_offers_each_openid_provider(anonymous: httpx.Client) -> None:
    page = anonymous.get("/ui/login", params={"next": "/ui/explore"})
    assert 'id="login-form"' in page.text and 'name="password" type="password"' in page.text
    link = re.search(r'href="(/zot/auth/login\?provider=github&amp;callback_ui=[^"]+)"', page.text)
    assert link and "Sign in with GitHub" in page.text
    assert "callback_ui=http%3A//registry.test/ui/explore" in link.group(1)
    # the same providers zot's UI would read from the mgmt extension
    listed = anonymous.get("/v2/_zot/ext/mgmt").json()["http"]["auth"]["openid"]["providers"]
    buttons = re.findall(r'data-provider="([^"]+)"', page.text)
    assert buttons == list(listed) == ["github"]


def test_login_logout_and_wrong_passwords(ui_open: InProcessRegistry, ui_pushed: Pushed) -> None:
    with ui_open.client() as c:
        page = c.get("/ui/login")
        token = csrf_of(page.text)
        wrong = c.post("/ui/login", data={"csrf": token, "username": "alice", "password": "nope"})
        assert wrong.status_code == 401 and "Invalid username or password." in wrong.text
        assert "session" not in c.cookies
        # next may only be a path of this site
        r = c.post("/ui/login", data={"csrf": token, "username": "alice", "password": USERS["alice"],
                                      "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert "SameSite=Strict" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        home = c.get("/")
        assert ">alice</a>" in home.text
        cookie = c.cookies["session"]
        # the session is a real one: the API accepts it
        assert c.get("/v2/apps/web/tags/list").status_code == 200
        logout = Forms(home.text).find("/ui/logout")
        r = c.post("/ui/logout", data=logout)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        # the old cookie is dead everywhere, not just forgotten by this client
        with ui_open.client() as other:
            other.cookies.set("session", cookie)
            assert other.get("/v2/apps/web/tags/list").status_code == 401
            r = other.get("/ui/user")
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


# -- CSRF ----------------------------------------------------------------------------------------
def test_forms_without_the_token_or_from_another_site_are_refused(alice: httpx.Client,
                                                                 ui_open: InProcessRegistry) -> None:
    page = alice.get("/ui/repo/apps/web/tags")
    star = Forms(page.text).find("/ui/prefs", action="star")
    for data, headers in (({**star, "csrf": ""}, {}), ({**star, "csrf": "0" * 64}, {}),
                          (star, {"Origin": "http://evil.example"}), (star, {"Sec-Fetch-Site": "cross-site"})):
        r = alice.post("/ui/prefs", data=data, headers=headers)
        assert r.status_code == 403 and "came from another site" in r.text
    assert 'aria-pressed="false">☆ Star' in alice.get("/ui/repo/apps/web/tags").text
    # a token of another session does not pass either
    with log_in(ui_open, "alice") as other:
        r = other.post("/ui/prefs", data=star)
        assert r.status_code == 403
    r = alice.post("/ui/login", data={"username": "alice", "password": USERS["alice"]})
    assert r.status_code == 403
    r = alice.post("/ui/logout", data={})
    assert r.status_code == 403
    assert alice.get("/v2/").status_code == 200  # still logged in


# -- star and bookmark ---------------------------------------------------------------------------
def test_star_and_bookmark_toggle_through_the_user_preferences(alice: httpx.Client, bob: httpx.Client) -> None:
    page = alice.get("/ui/repo/tools/debug/tags")
    forms = Forms(page.text)
    for action in ("star", "bookmark"):
        r = alice.post("/ui/prefs", data=forms.find("/ui/prefs", action=action))
        assert r.status_code == 303 and r.headers["location"] == "/ui/repo/tools/debug/tags"
    page = alice.get("/ui/repo/tools/debug/tags").text
    assert 'id="star" aria-pressed="true"' in page and 'id="bookmark" aria-pressed="true"' in page
    home = alice.get("/").text
    starred = home.split('id="starred-h"')[1].split("</section>")[0]
    bookmarked = home.split('id="bookmarked-h"')[1].split("</section>")[0]
    assert "tools/debug" in starred and "tools/debug" in bookmarked
    # the API sees the same preference
    found = alice.post("/v2/_zot/ext/search", json={"query": "{ StarredRepos { Results { Name } } }"}).json()
    assert {"Name": "tools/debug"} in found["data"]["StarredRepos"]["Results"]
    # bob cannot star what he cannot read, even with a valid token of his own
    token = csrf_of(bob.get("/").text)
    r = bob.post("/ui/prefs", data={"csrf": token, "repo": "tools/debug", "action": "star"})
    assert r.status_code == 404
    # toggle back
    for action in ("star", "bookmark"):
        alice.post("/ui/prefs", data=Forms(alice.get("/ui/repo/tools/debug/tags").text).find("/ui/prefs", action=action))
    assert 'id="star" aria-pressed="false"' in alice.get("/ui/repo/tools/debug/tags").text


def test_anonymous_users_get_no_preference_toggles(anonymous: httpx.Client) -> None:
    page = anonymous.get("/ui/repo/library/alpine/tags").text
    assert "/ui/prefs" not in page and 'id="starred-h"' not in anonymous.get("/").text


# -- delete --------------------------------------------------------------------------------------
def test_delete_a_tag_needs_the_delete_permission(alice: httpx.Client, bob: httpx.Client,
                                                  ui_open: InProcessRegistry) -> None:
    with ui_open.client(headers=basic("alice")) as admin:
        push_image(admin, "library/alpine", "to-delete")
    page = bob.get("/ui/repo/library/alpine/tags").text
    assert "to-delete" in page and "/ui/delete" not in page  # bob may read, not delete
    token = csrf_of(bob.get("/").text)
    r = bob.post("/ui/delete", data={"csrf": token, "repo": "library/alpine", "tag": "to-delete"})
    assert r.status_code == 403
    with ui_open.client(headers=basic("alice")) as admin:
        assert admin.get("/v2/library/alpine/manifests/to-delete").status_code == 200
    page = alice.get("/ui/repo/library/alpine/tags").text
    form = Forms(page).find("/ui/delete", tag="to-delete")
    r = alice.post("/ui/delete", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/ui/repo/library/alpine/tags?deleted=to-delete"
    after = alice.get(r.headers["location"]).text
    assert "Tag to-delete deleted." in after and 'id="tag-to-delete"' not in after
    with ui_open.client(headers=basic("alice")) as admin:
        assert admin.get("/v2/library/alpine/manifests/to-delete").status_code == 404
        assert admin.get("/v2/library/alpine/manifests/3.19").status_code == 200


# -- API keys ------------------------------------------------------------------------------------
def test_api_keys_are_created_shown_once_listed_and_revoked(alice: httpx.Client, ui_open: InProcessRegistry) -> None:
    page = alice.get("/ui/user").text
    form = Forms(page).find("/ui/user/apikeys")
    r = alice.post("/ui/user/apikeys", data={**form, "label": "ci <robot>", "scopes": "library/**",
                                              "expires": "2999-01-31"})
    assert r.status_code == 201
    key = re.search(r'value="(zak_[0-9a-f]{32})"', r.text).group(1)
    assert "ci &lt;robot&gt;" in r.text and "<robot>" not in r.text  # escaped
    listing = alice.get("/ui/user").text
    assert key not in listing  # shown once
    assert "ci &lt;robot&gt;" in listing and "library/**" in listing and "2999-02-01" in listing
    with ui_open.client(auth=("alice", key)) as c:
        assert c.get("/v2/library/alpine/tags/list").status_code == 200
        assert c.get("/v2/apps/web/tags/list").status_code in (401, 403)  # scoped to library/**
    # the JSON API (same user, same store) lists the key the UI made
    keys = alice.get("/zot/auth/apikey").json()["apiKeys"]
    uuid = next(k["uuid"] for k in keys if k["label"] == "ci <robot>")
    revoke = Forms(listing).find("/ui/user/apikeys/revoke", id=uuid)
    r = alice.post("/ui/user/apikeys/revoke", data=revoke)
    assert r.status_code == 303 and r.headers["location"] == "/ui/user?revoked=1"
    assert "The key was revoked." in alice.get(r.headers["location"]).text
    with ui_open.client(auth=("alice", key)) as c:
        assert c.get("/v2/library/alpine/tags/list").status_code == 401
    again = alice.post("/ui/user/apikeys/revoke", data=revoke)
    assert again.status_code == 404


def test_api_key_form_errors_are_400_with_a_message(alice: httpx.Client) -> None:
    form = Forms(alice.get("/ui/user").text).find("/ui/user/apikeys")
    for fields, message in (({"expires": "yesterday"}, "must be a date"), ({"expires": "2001-01-01"}, "in the past"),
                            ({"scopes": "Bad Scope!"}, "Scopes are"), ({"label": "x" * 300}, "at most 256")):
        r = alice.post("/ui/user/apikeys", data={**form, **fields})
        assert r.status_code == 400 and message in r.text


def test_api_keys_cannot_manage_keys(ui_open: InProcessRegistry, alice: httpx.Client) -> None:
    form = Forms(alice.get("/ui/user").text).find("/ui/user/apikeys")
    key = re.search(r'value="(zak_\w+)"', alice.post("/ui/user/apikeys", data=form).text).group(1)
    with ui_open.client(auth=("alice", key)) as c:
        page = c.get("/ui/user")
        assert page.status_code == 200 and "Log in with a password to manage API keys." in page.text
        assert "/ui/user/apikeys" not in page.text


# -- content -------------------------------------------------------------------------------------
def test_repository_page_shows_annotations_tags_and_pull_commands(alice: httpx.Client, ui_pushed: Pushed) -> None:
    page = alice.get("/ui/repo/library/alpine/tags").text
    for text in ("A small base image", "<dd>Alpine</dd>", "<dd>MIT</dd>",
                 '<a href="https://example.com/alpine" rel="noopener noreferrer">',
                 'value="docker pull registry.test/library/alpine:3.19"', 'value="podman pull registry.test/library/alpine:3.19"',
                 'value="oras pull registry.test/library/alpine:3.19"', ui_pushed.digests["alpine"][:19],
                 'id="tag-3.18"', "linux/amd64"):
        assert text in page, text
    signed = alice.get("/ui/repo/signed/cosign-ok/tags").text
    assert "cosign untrusted" in signed or "cosign trusted" in signed


def test_image_page_shows_platforms_config_layers_history_and_referrers(alice: httpx.Client, ui_pushed: Pushed,
                                                                       anonymous: httpx.Client) -> None:
    index = alice.get("/ui/repo/multi/arch/tag/v2").text
    assert ">linux/amd64</h2>" in index and ">linux/arm64</h2>" in index
    for d in (ui_pushed.digests["index-amd64"], ui_pushed.digests["index-arm64"]):
        assert f'href="/v2/multi/arch/manifests/{d}"' in index
    assert "ADD layer0" in index and "CMD [&#34;sh&#34;]" in index and "no layer" in index
    app = alice.get("/ui/repo/artifacts/app/tag/1.0").text
    assert "application/spdx+json" in app and "application/vnd.scan+json" in app
    assert ui_pushed.digests["sbom"][:19] in app and "kind=sbom" in app
    web = alice.get("/ui/repo/apps/web/tag/v1").text
    assert "<dt>org.opencontainers.image.vendor</dt><dd>WebCo</dd>" in web
    assert 'data-load="/ui/repo/apps/web/tag/v1/lineage"' in web  # loaded by ui.js, a link without it
    lineage = alice.get("/ui/repo/apps/web/tag/v1/lineage").text
    base = lineage.split('id="base-h"')[1].split('id="derived-h"')[0]
    assert 'href="/ui/repo/library/alpine/tag/3.19"' in base  # built on alpine's layers
    alpine = alice.get("/ui/repo/library/alpine/tag/3.19/lineage").text
    assert 'href="/ui/repo/apps/web/tag/v1"' in alpine.split('id="derived-h"')[1]
    assert anonymous.get("/ui/repo/apps/web/tag/v1/lineage").status_code == 404  # what they may not read
    assert "apps/web" not in anonymous.get("/ui/repo/library/alpine/tag/3.19/lineage").text
    cosign = alice.get("/ui/repo/signed/cosign-referrer/tag/v1").text
    assert "cosign" in cosign and "application/vnd.dev.cosign" in cosign


def test_explore_searches_filters_sorts_and_pages(alice: httpx.Client) -> None:
    arm = alice.get("/ui/explore", params={"arch": "arm64"}).text
    assert _repos_linked(arm) == {"multi/arch", "library/nginx"}
    signed = _repos_linked(alice.get("/ui/explore", params={"signed": "1"}).text)
    assert "signed/cosign-ok" in signed and "library/alpine" not in signed
    tags = alice.get("/ui/explore", params={"q": "library/alpine:3"}).text
    assert 'href="/ui/repo/library/alpine/tag/3.19"' in tags and 'href="/ui/repo/library/alpine/tag/3.18"' in tags
    first = alice.get("/ui/explore", params={"sort": "updated"}).text
    assert "page 1 of" in first and 'rel="next"' in first
    nxt = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = alice.get(nxt).text
    assert "sort=updated" in nxt and 'rel="prev"' in second
    assert not _repos_linked(first) & _repos_linked(second)
    for junk in ({"page": "x"}, {"page": "-3"}, {"sort": "evil"}, {"os": "plan9"}, {"q": "::"}, {"q": "A" * 5000}):
        assert alice.get("/ui/explore", params=junk).status_code == 200


def test_bad_names_are_404_pages_not_errors(alice: httpx.Client) -> None:
    for path in ("/ui/repo/UPPER/tags", "/ui/repo/library/alpine/tag/..bad", "/ui/repo/library/alpine/tag/nope",
                 "/ui/repo/nope/tags"):
        r = alice.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
    token = csrf_of(alice.get("/").text)
    assert alice.post("/ui/delete", data={"csrf": token, "repo": "x", "tag": "../.."}).status_code == 400
    assert alice.post("/ui/prefs", data={"csrf": token, "repo": "apps/web", "action": "x"}).status_code == 400


def test_without_authentication_everyone_browses_and_trusted_signatures_show() -> None:
    with InProcessRegistry(config={"extensions": FULL_EXTENSIONS}) as registry, registry.client() as c:
        pushed = populate(c)
        home = c.get("/")
        assert home.status_code == 200 and "/ui/login" not in home.text and "/ui/prefs" not in home.text
        assert "This registry has no authentication" in c.get("/ui/login").text
        assert c.get("/ui/user").headers["location"].startswith("/ui/login")  # nobody to show
        assert c.post("/v2/_zot/ext/cosign", content=pushed.cosign_pem).status_code == 200
        assert "cosign trusted · public key" in c.get("/ui/repo/signed/cosign-ok/tags").text
        assert "cosign untrusted" in c.get("/ui/repo/signed/cosign-untrusted/tags").text
        assert c.post("/v2/_zot/ext/notation", params={"truststoreType": "ca"}, content=pushed.ca_pem).status_code == 200
        assert "notation trusted · " in c.get("/ui/repo/signed/notation-ok/tag/v1").text
        # anyone may delete here, still only through a form of this site
        page = c.get("/ui/repo/tools/debug/tags").text
        form = Forms(page).find("/ui/delete", tag="latest")
        assert c.post("/ui/delete", data={**form, "csrf": "x"}).status_code == 403
        assert c.post("/ui/delete", data=form).status_code == 303
        assert c.get("/v2/tools/debug/manifests/latest").status_code == 404


def test_a_helm_chart_gets_helm_and_oras_pull_commands(alice: httpx.Client, ui_open: InProcessRegistry) -> None:
    config = b'{"name": "demo", "version": "0.1.0", "apiVersion": "v2"}'
    chart = b"chart-bytes" * 10
    with ui_open.client(headers=basic("alice")) as api:
        push_blob(api, "apps/chart", config)
        push_blob(api, "apps/chart", chart)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(config, "application/vnd.cncf.helm.config.v1+json"),
                           "layers": [descriptor(chart, "application/vnd.cncf.helm.chart.content.v1.tar+gzip")]})
        r = api.put("/v2/apps/chart/manifests/0.1.0", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201
    page = alice.get("/ui/repo/apps/chart/tags").text
    assert 'value="helm pull oci://registry.test/apps/chart --version 0.1.0"' in page
    assert 'value="oras pull registry.test/apps/chart:0.1.0"' in page and "docker pull" not in page


def test_home_shows_the_count_recently_updated_and_most_pulled(alice: httpx.Client, bob: httpx.Client,
                                                           ui_open: InProcessRegistry) -> None:
    with ui_open.client(headers=basic("alice")) as api:
        for _ in range(3):
            assert api.get("/v2/library/nginx/manifests/1.27").status_code == 200
        assert api.get("/v2/apps/api/manifests/latest").status_code == 200
        listing = api.post("/v2/_zot/ext/search", json={"query": "{ RepoListWithNewestImage { Results { Name LastUpdated DownloadCount } } }"}).json()
    every = listing["data"]["RepoListWithNewestImage"]["Results"]
    home = alice.get("/").text
    assert f"<strong>{len(every)}</strong> repositories" in home
    popular = home.split('id="popular-h"')[1].split("</section>")[0]
    assert popular.index("library/nginx") < popular.index("apps/api")  # 3 pulls before 1
    recent = home.split('id="recent-h"')[1].split("</section>")[0]
    newest = max(every, key=lambda r: r["LastUpdated"])["Name"]
    assert _repos_linked(recent) and re.search(r'href="/ui/repo/([^"]+)/tags"', recent).group(1) == newest
    bobs = bob.get("/").text  # bob's counts are of what he may read
    assert "<strong>2</strong> repositories" in bobs and "apps/api" not in bobs
