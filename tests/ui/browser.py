"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, and what every page must pass.

``.ci/run`` installs Chromium (apt), Playwright (pip, test extra) and axe-core (npm, into the
git-ignored ``tests/.tools/axe``). Playwright drives the system browser (``executable_path``):
it never downloads one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect
from playwright.sync_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "tests" / ".tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: Screenshots of the test run (git-ignored).
ARTIFACTS = ROOT / "tests" / "ui" / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
expect.set_options(timeout=15_000)
PHONE = {"width": 390, "height": 844}


class Watched:
    """A browser context whose pages' console errors and uncaught exceptions are collected."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.errors: list[str] = []
        self.page = self.watch(context.new_page())

    def watch(self, page: Page) -> Page:
        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{page.url}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("dialog", lambda dialog: dialog.accept())  # the confirmation before a delete
        return page


@contextmanager
def browsing(browser: Browser, base_url: str, **options: Any) -> Iterator[Watched]:
    """A fresh context (no cookies); on leaving, no page may have logged an error."""
    context = browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(30_000)  # a busy CI machine: generous, never a measure of speed
    try:
        watched = Watched(context)
        yield watched
        assert not watched.errors, watched.errors
    finally:
        context.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page (WCAG 2 A/AA rules and best practices)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated by the driver: the page's CSP does not apply
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
    }""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"))


def shoot(page: Page, name: str) -> Path:
    """A screenshot in the artefact folder, checked to show something (not one flat colour)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    try:
        page.screenshot(path=str(path))
    except PlaywrightError as exc:  # Chromium, busy right after a viewport change: "Unable to capture screenshot"
        if "Unable to capture screenshot" not in str(exc):
            raise
        page.wait_for_timeout(500)
        page.screenshot(path=str(path))
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 8, f"{name}: blank screenshot"
        assert max(ImageStat.Stat(rgb).stddev) > 10, f"{name}: no contrast"
    return path


def luminance(path: Path) -> float:
    with Image.open(path) as image:
        return float(ImageStat.Stat(image.convert("L")).mean[0])
