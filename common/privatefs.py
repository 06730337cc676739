"""Owner-only files: the umask every shardreg process sets at start, and private directories.

Everything the registry writes under its data directory (LMDB files holding the session
secret and session records, blobs, uploads, key files, sockets) is for the registry's own user
only: directories 0700, files 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.config import ConfigError

#: Group and others get nothing on anything a shardreg process creates.
UMASK = 0o077


def set_umask() -> None:
    os.umask(UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700, or make an existing one 0700; refuse a directory
    another user owns (someone else could then enter it, or swap what is inside)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path} belongs to uid {st.st_uid}, not to this process (uid {os.geteuid()})")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path
