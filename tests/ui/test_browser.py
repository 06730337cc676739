"""The UI end to end: a real cluster (processes), a real headless Chromium, skopeo with an API key.

One browser and one cluster for the module (plus a small one with anonymous browsing off).
Every page visited is checked for console errors; the main pages for axe-core violations,
phone-width overflow, and screenshots in both themes (tests/ui/artifacts/, git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.cluster import Cluster
from tests.extensions.fixtures import Pushed, push_image
from tests.ui.browser import (
    ARTIFACTS,
    AXE,
    CHROMIUM,
    DESKTOP,
    PHONE,
    axe_violations,
    browsing,
    luminance,
    no_horizontal_scroll,
    shoot,
)
from tests.ui.support import USERS, basic, config, seed, write_htpasswd

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Pushed]]:
    """Anonymous browsing on (library/** only), an OpenID provider listed; the extension fixtures pushed."""
    root = tmp_path_factory.mktemp("ui-e2e")
    cfg = config(write_htpasswd(root / "htpasswd"), anonymous=True, providers=True)
    with Cluster(root / "data", shards=2, workers=1, config=cfg) as cluster:
        with httpx.Client(base_url=cluster.url, headers=basic("alice"), timeout=60) as alice:
            pushed = seed(alice)
        yield cluster, pushed


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "chromium is not installed (.ci/run installs it)"
    assert AXE.exists(), "axe-core is not installed (.ci/run installs it into tests/.tools/axe)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def log_in(page: Page, user: str) -> None:
    """The password form, by keyboard only."""
    page.goto("/ui/login")
    expect(page.locator("#username")).to_be_focused()  # autofocus
    page.keyboard.type(user)
    page.keyboard.press("Tab")
    page.keyboard.type(USERS[user])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("header .user")).to_have_text(user)


def repos_on(page: Page) -> set[str]:
    return {re.sub(r"^/ui/repo/|/tags$", "", h) for h in
            page.locator("main a[href$='/tags']").evaluate_all("links => links.map(a => a.getAttribute('href'))")}


def test_anonymous_browsing_and_the_login_page(site: tuple[Cluster, Pushed], browser: Browser) -> None:
    cluster, _ = site
    with browsing(browser, cluster.url) as b:
        page = b.page
        page.goto("/")
        assert repos_on(page) == {"library/alpine", "library/nginx"}
        page.keyboard.press("Tab")
        expect(page.locator("a.skip")).to_be_focused()  # the first stop: skip to content
        page.get_by_role("link", name="Log in").click()
        button = page.get_by_role("link", name="Sign in with GitHub")
        expect(button).to_be_visible()
        href = button.get_attribute("href") or ""
        assert href.startswith("/zot/auth/login?provider=github&callback_ui=" + cluster.url.replace(":", "%3A"))
        assert axe_violations(page) == []


def test_search_filter_and_a_multi_arch_image_with_signature_and_sbom(site: tuple[Cluster, Pushed],
                                                                       browser: Browser) -> None:
    cluster, pushed = site
    with browsing(browser, cluster.url, permissions=["clipboard-read", "clipboard-write"]) as b:
        page = b.page
        log_in(page, "alice")
        page.get_by_role("searchbox", name="Search repositories or repo:tag").fill("arch")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/ui/explore\?q=arch"))
        assert repos_on(page) == {"multi/arch"}
        page.get_by_label("Search", exact=True).fill("")
        page.get_by_label("Architecture").select_option("arm64")
        page.get_by_role("button", name="Apply").click()
        page.wait_for_url(re.compile(r"arch=arm64"))
        assert repos_on(page) == {"multi/arch", "library/nginx"}
        page.get_by_label("Architecture").select_option("")
        page.get_by_label("Signed only").check()
        page.get_by_role("button", name="Apply").click()
        page.wait_for_url(re.compile(r"signed=1"))
        assert "signed/cosign-ok" in repos_on(page) and "library/alpine" not in repos_on(page)
        assert axe_violations(page) == []

        page.goto("/ui/repo/multi/arch/tags")
        page.get_by_role("link", name="v2", exact=True).click()
        expect(page.get_by_role("heading", name="linux/amd64")).to_be_visible()
        expect(page.get_by_role("heading", name="linux/arm64")).to_be_visible()
        page.get_by_role("button", name="Copy").first.click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied == f"docker pull {cluster.url.split('//')[1]}/multi/arch:v2"
        assert axe_violations(page) == []

        page.goto("/ui/repo/apps/web/tag/v1")  # base and derived images load after the page (ui.js)
        expect(page.locator("#lineage")).to_contain_text("library/alpine:3.19")
        expect(page.get_by_role("heading", name="Based on")).to_be_visible()
        page.goto("/ui/repo/artifacts/app/tag/1.0")  # an image with an SBOM and a scan report
        referrers = page.locator("table.referrers")
        expect(referrers).to_contain_text("application/spdx+json")
        expect(referrers).to_contain_text(pushed.digests["sbom"][:19])
        page.goto("/ui/repo/signed/cosign-referrer/tag/v1")  # a cosign signature as a referrer
        expect(page.locator("table.referrers")).to_contain_text("application/vnd.dev.cosign")
        page.goto("/ui/repo/signed/notation-ok/tags")
        expect(page.locator("table.tags")).to_contain_text("notation")
        assert axe_violations(page) == []


def test_star_bookmark_api_key_with_skopeo_and_logout(site: tuple[Cluster, Pushed], browser: Browser,
                                                     tmp_path: Path) -> None:
    cluster, _ = site
    with browsing(browser, cluster.url, permissions=["clipboard-read", "clipboard-write"]) as b:
        page = b.page
        log_in(page, "alice")
        page.goto("/ui/repo/tools/busybox/tags")
        page.get_by_role("button", name="☆ Star").click()
        expect(page.locator("#star")).to_have_attribute("aria-pressed", "true")
        page.get_by_role("button", name="Bookmark").click()
        expect(page.locator("#bookmark")).to_have_attribute("aria-pressed", "true")
        page.goto("/")
        for section in ("Starred", "Bookmarked"):
            expect(page.get_by_role("region", name=section)).to_contain_text("tools/busybox")

        page.get_by_role("link", name="alice").click()
        page.get_by_label("Label").fill("skopeo")
        page.get_by_role("button", name="Create key").click()
        key = page.locator("#new-key").input_value()
        assert re.fullmatch(r"zak_[0-9a-f]{32}", key)
        expect(page.locator("table.keys")).to_contain_text("skopeo")
        assert axe_violations(page) == []
        image = f"docker://{cluster.url.split('//')[1]}/library/alpine:3.19"
        home = tmp_path / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
        inspect = [SKOPEO, "--insecure-policy", "inspect", "--raw", "--tls-verify=false", "--creds", f"alice:{key}", image]
        ok = subprocess.run(inspect, capture_output=True, text=True, timeout=60, env=env)
        assert ok.returncode == 0, ok.stderr
        assert '"schemaVersion"' in ok.stdout
        page.get_by_role("button", name="Revoke key skopeo").click()  # the confirmation is accepted
        expect(page.get_by_role("status")).to_have_text("The key was revoked.")
        expect(page.locator("main")).not_to_contain_text("skopeo")
        refused = subprocess.run(inspect, capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode != 0 and ("401" in refused.stderr or "unauthorized" in refused.stderr.lower())

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(re.compile(r"/ui/login$"))
        page.goto("/ui/user")
        page.wait_for_url(re.compile(r"/ui/login\?next=/ui/user"))


def test_delete_a_tag(site: tuple[Cluster, Pushed], browser: Browser) -> None:
    cluster, _ = site
    with httpx.Client(base_url=cluster.url, headers=basic("alice"), timeout=60) as api:
        push_image(api, "library/alpine", "old")
        with browsing(browser, cluster.url) as b:
            page = b.page
            log_in(page, "alice")
            page.goto("/ui/repo/library/alpine/tags")
            page.get_by_role("button", name="Delete tag old").click()  # the confirmation is accepted
            expect(page.get_by_role("status")).to_have_text("Tag old deleted.")
            expect(page.locator("#tag-old")).to_have_count(0)
            expect(page.locator("#tag-3\\.19")).to_have_count(1)
        assert api.get("/v2/library/alpine/manifests/old").status_code == 404


def test_a_user_who_may_read_some_repositories_sees_only_those(site: tuple[Cluster, Pushed], browser: Browser) -> None:
    cluster, _ = site
    with browsing(browser, cluster.url) as b:
        page = b.page
        log_in(page, "bob")
        assert repos_on(page) <= {"library/alpine", "library/nginx"}
        page.goto("/ui/explore")
        assert repos_on(page) == {"library/alpine", "library/nginx"}
        page.goto("/ui/repo/library/alpine/tags")
        expect(page.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)  # read, no delete


def test_anonymous_browsing_off(tmp_path: Path, browser: Browser) -> None:
    cfg = config(write_htpasswd(tmp_path / "htpasswd"), anonymous=False)
    with Cluster(tmp_path / "data", shards=1, workers=1, config=cfg) as cluster:
        with httpx.Client(base_url=cluster.url, headers=basic("alice"), timeout=60) as api:
            push_image(api, "library/alpine", "3.19")
        with browsing(browser, cluster.url) as b:
            page = b.page
            page.goto("/ui/explore")
            page.wait_for_url(re.compile(r"/ui/login\?next=/ui/explore"))
            expect(page.locator("#login-form")).to_be_visible()
            expect(page.get_by_role("link", name=re.compile("Sign in with"))).to_have_count(0)  # no OpenID here
            page.get_by_label("Username").fill("bob")
            page.get_by_label("Password").fill(USERS["bob"])
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(re.compile(r"/ui/explore$"))  # back where they were going
            assert repos_on(page) == {"library/alpine"}


MAIN_PAGES = {"login": "/ui/login", "home": "/", "explore": "/ui/explore?sort=updated",
              "repository": "/ui/repo/library/alpine/tags", "image": "/ui/repo/multi/arch/tag/v2", "user": "/ui/user"}


def test_screenshots_in_both_themes_at_desktop_and_phone_width(site: tuple[Cluster, Pushed], browser: Browser) -> None:
    cluster, _ = site
    shots: dict[tuple[str, str, str], Path] = {}
    with browsing(browser, cluster.url, viewport=DESKTOP) as b:
        page = b.page
        for scheme in ("light", "dark"):  # the login page, before logging in
            page.emulate_media(color_scheme=scheme)
            for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                page.set_viewport_size(viewport)
                page.goto("/ui/login")
                shots[("login", width, scheme)] = shoot(page, f"login-{width}-{scheme}")
        page.set_viewport_size(DESKTOP)
        log_in(page, "alice")
        for name, path in MAIN_PAGES.items():
            if name == "login":
                continue
            page.goto(path)
            page.wait_for_load_state("networkidle")  # sections loaded after the page are in
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                    page.set_viewport_size(viewport)
                    assert no_horizontal_scroll(page), f"{name} scrolls sideways at {width} width"
                    shots[(name, width, scheme)] = shoot(page, f"{name}-{width}-{scheme}")
            assert axe_violations(page) == []  # dark theme, phone width: contrast and layout there too
        page.emulate_media(color_scheme="light")
        page.set_viewport_size(DESKTOP)
        page.goto("/ui/repo/artifacts/app/tag/1.0")  # the whole page, for docs/ui.md
        page.wait_for_load_state("networkidle")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "image-referrers-full.png"), full_page=True)
    for name in MAIN_PAGES:
        for width in ("desktop", "phone"):
            assert luminance(shots[(name, width, "dark")]) < luminance(shots[(name, width, "light")]) - 40, name
