"""Test-only fault injection: die (``os._exit(137)``, as SIGKILL) at a named step.

``SHARDREG_FAULTS=<step>:<key>:<n>@<marker file>`` makes the process exit the ``n``-th time
``hit(step, key)`` is called, once: the marker file is created first, and a process that finds
it does not exit again (a restarted shard inherits the same environment). Unset in production:
``hit`` is then a dictionary lookup.
"""

from __future__ import annotations

import os
from pathlib import Path

_SPEC = os.environ.get("SHARDREG_FAULTS", "")
_counts: dict[tuple[str, str], int] = {}


def hit(step: str, key: str = "") -> None:
    if not _SPEC:
        return
    where, _, marker = _SPEC.partition("@")
    want_step, want_key, n = (where.split(":") + ["", "", "1"])[:3]
    if step != want_step or key != want_key:
        return
    count = _counts[(step, key)] = _counts.get((step, key), 0) + 1
    if count == int(n or 1) and marker and not Path(marker).exists():
        Path(marker).touch()
        os._exit(137)
