"""What the UI tests share: users, the access policy, the registry's content, HTML form helpers."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from tests.extensions.fixtures import FULL_EXTENSIONS, Pushed, populate, push_image

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
ALL = ["read", "create", "update", "delete"]
#: What bob may read (and anonymous users, when anonymous browsing is on).
BOB_READS = "library/**"
PROVIDERS = {"github": {"name": "GitHub", "clientid": "ui-test", "clientsecret": "ui-test-secret"}}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()}


def write_htpasswd(path: Path) -> Path:
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for u, p in USERS.items()))
    return path


def config(htpasswd: Path, *, anonymous: bool, providers: bool = False) -> dict[str, Any]:
    """alice may do everything; bob may read ``library/**``; anonymous users that too when ``anonymous``."""
    anon = ["read"] if anonymous else []
    auth: dict[str, Any] = {"htpasswd": {"path": str(htpasswd)}, "apikey": True}
    if providers:
        auth["openid"] = {"providers": PROVIDERS}
    return {
        "http": {"auth": auth, "accessControl": {"repositories": {
            "**": {"policies": [{"users": ["alice"], "actions": ALL}], "anonymousPolicy": []},
            BOB_READS: {"policies": [{"users": ["alice"], "actions": ALL}, {"users": ["bob"], "actions": ["read"]}],
                        "anonymousPolicy": anon},
        }}},
        "extensions": FULL_EXTENSIONS,
    }


def seed(client: httpx.Client) -> Pushed:
    """The extension fixtures (multi-arch index, signatures, an SBOM, ...) and a few library images."""
    pushed = populate(client)
    push_image(client, "library/nginx", "1.27", os_="linux", arch="arm64",
               annotations={"org.opencontainers.image.description": "web server"})
    return pushed


class Forms(HTMLParser):
    """The forms of a page: action → list of {field: value} (hidden and text inputs)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")

    def find(self, target: str, /, **match: str) -> dict[str, str]:
        """The fields of the form posting to ``target`` whose fields include ``match``."""
        for form_action, fields in self.forms:
            if form_action == target and all(fields.get(k) == v for k, v in match.items()):
                return dict(fields)
        raise AssertionError(f"no form {target} {match}")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)
