"""htpasswd files with bcrypt entries (``htpasswd -B``): verify, reload on change, edit.

Each line is ``user:$2y$...``. Only bcrypt hashes are accepted; other lines are skipped with
a warning (never with their content). The file is re-read when its mtime, size or inode
changes (a ``stat`` per check, about a microsecond), so ``shardreg user add`` and ``remove`` take
effect on the next request of every worker, without a restart.

bcrypt is slow on purpose (≈100 ms per check at cost 10): verifications run in a thread, and a
successful one is remembered for a short while under an HMAC of (user, password, stored hash)
with a per-process random key, so a client sending Basic auth on every request of a push pays
the cost once, and a password change or user removal takes effect at the next reload. A check
for a user who does not exist runs bcrypt against a dummy hash of the file's cost, so the
answer takes as long as for a wrong password (no timing oracle for user names).

``on_removed`` (set by access control) is told the users a reload found gone, so their API
keys and sessions can be deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import bcrypt

log = logging.getLogger("shardreg.auth")

#: How long a successful password check is remembered.
VERIFIED_TTL = 60.0
#: How often the file's metadata is looked at: at every check (a removal is effective at once).
STAT_INTERVAL = 0.0
DEFAULT_COST = 10
_COST_RE = re.compile(rb"^\$2[aby]\$(\d\d)\$")


def _parse(text: str, path: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("%s line %d: not user:hash, skipped", path, number)
            continue
        if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            log.warning("%s line %d (user %s): not a bcrypt hash, skipped", path, number, user)
            continue
        users[user] = hashed.encode()
    return users


class HtpasswdFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.users: dict[str, bytes] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._cache_key = os.urandom(32)
        self._verified: dict[bytes, float] = {}
        self._dummy: bytes | None = None
        #: bcrypt verifications run (tests check that an unknown user costs one too).
        self.bcrypt_checks = 0
        self.on_removed: Callable[[set[str]], None] | None = None
        self.reload()

    @property
    def loaded(self) -> bool:
        """The file was read and names at least one user (a removal can be trusted)."""
        return self._signature is not None and bool(self.users)

    def reload(self) -> None:
        """Re-read the file if it changed; a missing or unreadable file means no users."""
        self._checked = time.monotonic()
        try:
            st = self.path.stat()
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            if signature == self._signature:
                return
            text = self.path.read_text()
        except OSError as exc:
            if self._signature is not None or self.users:
                log.warning("htpasswd %s unreadable (%s): no users", self.path, exc.strerror)
            self.users, self._signature = {}, None
            return
        before = self.users if self._signature is not None else {}
        self.users, self._signature = _parse(text, str(self.path)), signature
        self._verified.clear()
        self._dummy = None
        log.info("htpasswd %s loaded: %d users", self.path, len(self.users))
        removed = set(before) - set(self.users)
        if removed and self.users and self.on_removed is not None:
            self.on_removed(removed)

    def _dummy_hash(self) -> bytes:
        """A hash of a random password at the file's most common cost (for unknown users)."""
        if self._dummy is None:
            costs = Counter(int(m.group(1)) for h in self.users.values() if (m := _COST_RE.match(h)))
            cost = costs.most_common(1)[0][0] if costs else DEFAULT_COST
            self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=min(max(cost, 4), 16)))
        return self._dummy

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked >= STAT_INTERVAL:
            self.reload()

    def has_user(self, user: str) -> bool:
        self._maybe_reload()
        return user in self.users

    async def verify(self, user: str, password: str) -> bool:
        self._maybe_reload()
        hashed = self.users.get(user)
        if hashed is None:  # spend the same time as for a wrong password
            self.bcrypt_checks += 1
            await asyncio.to_thread(lambda: _checkpw(password.encode(), self._dummy_hash()))
            return False
        token = hmac.new(self._cache_key, b"\0".join([user.encode(), password.encode(), hashed]),
                         hashlib.sha256).digest()
        now = time.monotonic()
        expiry = self._verified.get(token)
        if expiry is not None and expiry > now:
            return True
        self.bcrypt_checks += 1
        ok = await asyncio.to_thread(_checkpw, password.encode(), hashed)
        if ok:
            if len(self._verified) > 10_000:
                self._verified = {k: v for k, v in self._verified.items() if v > now}
            self._verified[token] = now + VERIFIED_TTL
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


# -- editing (``shardreg user``) -------------------------------------------------------------
def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def read_entries(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and user and not user.startswith("#"):
            entries.append((user, hashed))
    return entries


def write_entries(path: Path, entries: list[tuple[str, str]]) -> None:
    """Replace the file atomically (a reader never sees half a file), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{user}:{hashed}\n" for user, hashed in entries))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
