from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.extensions.fixtures import Pushed, push_image
from tests.inprocess import InProcessRegistry
from tests.ui.support import USERS, basic, config, csrf_of, seed, write_htpasswd


@pytest.fixture(scope="session")
def ui_htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_htpasswd(tmp_path_factory.mktemp("ui-auth") / "htpasswd")


@pytest.fixture(scope="session")
def ui_open(ui_htpasswd: Path) -> Iterator[InProcessRegistry]:
    """Anonymous browsing on (library/** only), an OpenID provider configured; the extension fixtures pushed."""
    with InProcessRegistry(config=config(ui_htpasswd, anonymous=True, providers=True)) as registry:
        yield registry


@pytest.fixture(scope="session")
def ui_pushed(ui_open: InProcessRegistry) -> Pushed:
    with ui_open.client(headers=basic("alice")) as alice:
        return seed(alice)


@pytest.fixture(scope="session")
def ui_closed(ui_htpasswd: Path) -> Iterator[InProcessRegistry]:
    """Anonymous browsing off, no OpenID."""
    with InProcessRegistry(config=config(ui_htpasswd, anonymous=False)) as registry:
        with registry.client(headers=basic("alice")) as alice:
            push_image(alice, "library/alpine", "3.19")
            push_image(alice, "apps/web", "v1")
        yield registry


@contextmanager
def log_in(registry: InProcessRegistry, user: str) -> Iterator[httpx.Client]:
    """A browser-like client of ``registry`` with a session made by the UI's login form."""
    with registry.client() as client:
        page = client.get("/ui/login")
        assert page.status_code == 200
        r = client.post("/ui/login", data={"csrf": csrf_of(page.text), "username": user, "password": USERS[user],
                                           "next": "/"})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        assert "session" in client.cookies
        yield client


@pytest.fixture()
def alice(ui_open: InProcessRegistry, ui_pushed: Pushed) -> Iterator[httpx.Client]:
    with log_in(ui_open, "alice") as client:
        yield client


@pytest.fixture()
def bob(ui_open: InProcessRegistry, ui_pushed: Pushed) -> Iterator[httpx.Client]:
    with log_in(ui_open, "bob") as client:
        yield client


@pytest.fixture()
def anonymous(ui_open: InProcessRegistry, ui_pushed: Pushed) -> Iterator[httpx.Client]:
    with ui_open.client() as client:
        yield client
