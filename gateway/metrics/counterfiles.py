"""The gateway workers' counters summed for a scrape without parsing them again (issue 17).

prometheus-client's multiprocess mode keeps each worker's counters in an append-only file
(``counter_<pid>.db``: entries of a JSON key and a double, values updated in place). Its collector
re-parses every key of every file on each scrape and builds a Python object per sample; with the
per-repository series (``zot_repo_downloads_total{repo}``, ``zot_repo_uploads_total{repo}``) that
was 5 s per scrape at 100,000 repositories. :class:`CounterFiles` parses each entry once, keeps
where its value lies, and on each scrape reads the files, sums the values by series and writes
the text directly: the same output, a few times faster, and the parsing does not grow with scrapes.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

_INT = struct.Struct("i")
_DOUBLE = struct.Struct("d")
#: How a worker names its counter file (prometheus_client: ``<type>_<pid>.db``).
PATTERN = "counter_*.db"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@dataclass
class _Series:
    family: str
    help: str
    #: ``name{labels} `` of the sample line.
    prefix: str


@dataclass
class _File:
    #: Bytes of the file parsed so far (entries are only appended).
    used: int = 8
    #: (series index, offset of its value) of every entry parsed.
    entries: list[tuple[int, int]] = field(default_factory=list)


class CounterFiles:
    """Counters of the multiprocess directory ``path``, in Prometheus text format."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.series: list[_Series] = []
        self._by_key: dict[bytes, int] = {}
        self._files: dict[str, _File] = {}

    def _parse(self, data: bytes, state: _File, used: int) -> None:
        pos = state.used
        while pos < used:
            length = _INT.unpack_from(data, pos)[0]
            if length + pos > used:
                raise RuntimeError("counter file is corrupted")
            key = data[pos + 4:pos + 4 + length]
            pos += 4 + length + (8 - (length + 4) % 8)
            index = self._by_key.get(key)
            if index is None:
                family, name, labels, help_text = json.loads(key)
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                index = self._by_key[key] = len(self.series)
                self.series.append(_Series(family, help_text, f"{name}{{{text}}} " if text else f"{name} "))
            state.entries.append((index, pos))
            pos += 16  # the value and a timestamp
        state.used = used

    def totals(self) -> dict[int, float]:
        """The value of each series summed over every worker's file."""
        totals: dict[int, float] = defaultdict(float)
        names = set(glob.glob(os.path.join(self.path, PATTERN)))
        for gone in set(self._files) - names:
            del self._files[gone]
        for name in sorted(names):
            try:
                with open(name, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                continue
            used = _INT.unpack_from(data, 0)[0] if len(data) >= 8 else 0
            state = self._files.get(name)
            if state is None or used < state.used:  # new, or a new file under an old name
                state = self._files[name] = _File()
            if used > len(data):
                raise RuntimeError("counter file is truncated")
            self._parse(data, state, used)
            for index, pos in state.entries:
                totals[index] += _DOUBLE.unpack_from(data, pos)[0]
        return totals

    def text(self) -> bytes:
        """``# HELP``/``# TYPE`` and the samples of every counter family, as prometheus-client writes them."""
        families: dict[str, list[int]] = defaultdict(list)
        totals = self.totals()
        for index in totals:
            families[self.series[index].family].append(index)
        out: list[str] = []
        for family, indexes in families.items():
            first = self.series[indexes[0]]
            doc = first.help.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {family}_total {doc}\n# TYPE {family}_total counter\n")
            out.extend(f"{self.series[i].prefix}{floatToGoString(totals[i])}\n" for i in indexes)
        return "".join(out).encode()
