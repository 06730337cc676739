"""The wire types of the storage lifecycle ops (re-exported by :mod:`common.messages`)."""

# No ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time.
from typing import Any, NotRequired, TypedDict

from common.protocol import Op, Wire


class RetentionRunRequest(TypedDict):
    #: Plan only (``shardreg retention --dry-run``), whatever ``storage.retention.dryRun`` says.
    dry_run: bool
    #: Also list the blobs the next gc would unlink (``shardreg gc --dry-run``).
    gc: NotRequired[bool]


class RetentionRunReply(TypedDict):
    """The pass's report: ``{started, finished, dryRun, repos: {repo: [action...]}, deleted, kept}``."""

    report: dict[str, Any]


class ClockSetRequest(TypedDict):
    #: Seconds added to the wall clock for lifecycle decisions (tests only: extensions.debug).
    offset: float


class ClockSetReply(TypedDict):
    offset: float


RETENTION_RUN = Wire(Op.RETENTION_RUN, RetentionRunRequest, RetentionRunReply)
CLOCK_SET = Wire(Op.CLOCK_SET, ClockSetRequest, ClockSetReply)
