"""Test users: an htpasswd file of them and their Basic ``Authorization`` header."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """``users`` (name → password) as an htpasswd file (bcrypt, cost 4: fast in tests)."""
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in users.items()))
    return path


def basic_header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
