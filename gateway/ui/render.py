"""Templates (Jinja2, autoescaped) and static assets of the UI, all package data of ``gateway.ui``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from quart import Response, request

from common.errors import ErrorCode, RegistryError
from gateway.ui.security import secure

HERE = Path(__file__).parent
STATIC = HERE / "static"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
          ".png": "image/png"}
#: Asset name → (bytes, content type); read once: a few KiB.
_ASSETS = {p.name: (p.read_bytes(), _TYPES[p.suffix]) for p in sorted(STATIC.iterdir()) if p.suffix in _TYPES}
_VERSION = hashlib.sha256(b"".join(data for data, _ in _ASSETS.values())).hexdigest()[:12]


def human_size(value: Any) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def when(value: Any) -> str:
    """An RFC 3339 time as ``2024-01-02 03:04 UTC``."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return ""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value[:40]
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short(digest: Any) -> str:
    text = str(digest or "")
    algorithm, _, hexpart = text.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else text[:19]


def signer(value: Any) -> str:
    """A signature's author as a short label (cosign names a whole PEM public key)."""
    text = str(value or "").strip()
    if text.startswith("-----BEGIN"):
        return "public key"
    return text if len(text) <= 60 else text[:57] + "..."


def is_link(value: Any) -> bool:
    """Whether an annotation is a web address safe to link to (never ``javascript:``)."""
    return isinstance(value, str) and value.lower().startswith(("https://", "http://")) and len(value) < 2000


env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(size=human_size, when=when, short=short, link=is_link, signer=signer)
env.globals["asset"] = lambda name: f"/ui/static/{name}?v={_VERSION}"


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render ``template`` as an HTML answer with the UI's headers."""
    html = env.get_template(template).render(**context, path=request.path)
    return secure(Response(html, status=status, content_type="text/html; charset=utf-8"))


def redirect(location: str, status: int = 303) -> Response:
    response = Response(b"", status=status)
    response.headers["Location"] = location
    return secure(response)


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this site (never another origin: no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 2000:
        return default
    if any(ord(c) < 0x20 for c in value):
        return default
    return value


async def static_asset(asset: str) -> Response:
    """``/ui/static/<asset>``: the stylesheet, the script, the icon."""
    found = _ASSETS.get(asset)
    if found is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "no such UI asset", status=404)
    data, content_type = found
    response = Response(data, content_type=content_type)
    response.headers["Cache-Control"] = "public, max-age=86400" if request.args.get("v") == _VERSION else "no-cache"
    return secure(response, cache=True)
