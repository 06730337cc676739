"""Which signals stop a process.

SIGTERM always does. SIGINT does unless it was ignored when the process started: a supervisor
starts its children with SIGINT ignored (Ctrl-C is for the supervisor, which then stops them
in order), and a process that installs its own SIGINT handler would undo that.
"""

from __future__ import annotations

import signal

_INHERITED_SIGINT = signal.getsignal(signal.SIGINT)


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals this process should treat as "stop"."""
    if _INHERITED_SIGINT is signal.SIG_IGN:
        return (signal.SIGTERM,)
    return (signal.SIGTERM, signal.SIGINT)


__all__ = ["stop_signals"]
