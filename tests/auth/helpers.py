"""Registry operations the auth tests perform under a given set of credentials."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import httpx

from tests.oci import OCI_MANIFEST, digest, image_manifest, push_image

#: Success status of each action.
OK_STATUS = {"read": 200, "create": 201, "update": 201, "delete": 202}

Headers = dict[str, str]


def _config_blob() -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                       "nonce": os.urandom(8).hex()}).encode()


def try_push(client: httpx.Client, repo: str, tag: str, headers: Headers) -> int:
    """Push a fresh image; the first failing status, or the manifest PUT's status."""
    config, layer = _config_blob(), os.urandom(512)
    for blob in (config, layer):
        r = client.post(f"/v2/{repo}/blobs/uploads/", headers=headers)
        if r.status_code != 202:
            return r.status_code
        r = client.put(r.headers["Location"], params={"digest": digest(blob)}, content=blob,
                       headers={**headers, "Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            return r.status_code
    body = image_manifest(config, [layer])
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={**headers, "Content-Type": OCI_MANIFEST})
    return r.status_code


class Seeded:
    """Images pushed by an admin so that every action has something to act on."""

    def __init__(self, client: httpx.Client, admin: Headers, repos: list[str]) -> None:
        self.client, self.admin = client, admin
        self.manifests: dict[str, dict[str, bytes]] = {}
        admin_client = httpx.Client(base_url=str(client.base_url), headers=admin, timeout=30)
        with admin_client:
            for repo in repos:
                self.manifests[repo] = {}
                for tag in ("v1", "v2"):
                    _, body = push_image(admin_client, repo, tag)
                    self.manifests[repo][tag] = body

    def fresh(self, repo: str) -> str:
        """A new manifest only the caller of :meth:`do` deletes; returns its digest."""
        with httpx.Client(base_url=str(self.client.base_url), headers=self.admin, timeout=30) as c:
            d, _ = push_image(c, repo, f"del-{os.urandom(4).hex()}", layers=1, layer_size=64)
        return d

    def do(self, action: str, repo: str, headers: Headers | Callable[[str, str], Headers]) -> int:
        h = headers(repo, action) if callable(headers) else headers
        c = self.client
        if action == "read":
            return c.get(f"/v2/{repo}/manifests/v1", headers={**h, "Accept": OCI_MANIFEST}).status_code
        if action == "create":
            return try_push(c, repo, f"new-{os.urandom(4).hex()}", h)
        if action == "update":
            # overwrite tag v1 with the (already stored) v2 manifest: needs update, not create
            return c.put(f"/v2/{repo}/manifests/v1", content=self.manifests[repo]["v2"],
                         headers={**h, "Content-Type": OCI_MANIFEST}).status_code
        if action == "delete":
            d = self.fresh(repo)
            return c.delete(f"/v2/{repo}/manifests/{d}", headers=h).status_code
        raise ValueError(action)


REPOS = ["public/app", "team-a/app", "team-a/updater", "private/db", "other/x"]

#: (user, repository, action, allowed) under tests.auth.conftest.ACCESS_CONTROL
MATRIX = [
    ("alice", "public/app", "read", True),
    ("alice", "team-a/app", "read", False),   # the most specific pattern (team-a/**) has no defaultPolicy
    ("alice", "private/db", "read", False),
    ("alice", "other/x", "read", True),       # ** defaultPolicy
    ("bob", "team-a/app", "read", True),      # via group team-a
    ("bob", "private/db", "read", False),
    ("carol", "private/db", "read", True),
    ("dave", "team-a/app", "read", False),
    ("alice", "public/app", "create", True),
    ("bob", "team-a/app", "create", True),
    ("dave", "other/x", "create", False),
    ("alice", "team-a/app", "create", False),
    ("root", "private/db", "create", True),   # adminPolicy
    ("bob", "team-a/app", "update", False),   # create but not update: cannot overwrite a tag
    ("carol", "team-a/app", "update", True),
    ("alice", "public/app", "update", True),
    ("bob", "team-a/updater", "update", True),  # update only: may move an existing tag
    ("bob", "team-a/updater", "create", False),  # ... but not push new content
    ("carol", "team-a/app", "delete", True),
    ("bob", "team-a/app", "delete", False),
    ("alice", "public/app", "delete", True),
    ("dave", "other/x", "delete", False),
]


def expected(action: str, allowed: bool) -> int:
    return OK_STATUS[action] if allowed else 403
