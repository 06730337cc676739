"""The gateway's own reading of the workers' counter files gives exactly what prometheus-client's
multiprocess collector gives, also after the files grew, changed, appeared or went between scrapes."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics.counterfiles import CounterFiles


def library(path: Path) -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return generate_latest(registry)


def families(text: bytes) -> dict:
    return {f.name: (f.documentation, f.type, sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                                                     for s in f.samples))
            for f in text_string_to_metric_families(text.decode())}


def count(files: dict[int, MmapedDict], pid: int, family: str, labels: dict[str, str], by: float,
          help_text: str = "Total number of times") -> None:
    key = mmap_key(family, f"{family}_total", list(labels), list(labels.values()), help_text)
    f = files[pid]
    f.write_value(key, f.read_value(key)[0] + by, 0.0)


def test_the_same_text_as_the_library_between_changes(tmp_path: Path) -> None:
    files = {pid: MmapedDict(str(tmp_path / f"counter_{pid}.db")) for pid in (101, 102)}
    counter = CounterFiles(str(tmp_path))
    for i in range(300):
        count(files, 101 + i % 2, "zot_repo_downloads", {"repo": f"team/app-{i % 120}"}, 1)
    count(files, 101, "shardreg_odd", {"v": 'a "quoted"\\ value\nwith a newline'}, 2.5, "help with \\ and\nnewline")
    count(files, 102, "shardreg_plain", {}, 7)
    assert families(counter.text()) == families(library(tmp_path))
    first = counter.text()
    for i in range(50):  # values move in place, new series are appended
        count(files, 102, "zot_repo_downloads", {"repo": f"team/app-{i * 7}"}, 3)
        count(files, 101, "zot_repo_uploads", {"repo": f"team/new-{i}"}, 1)
    assert counter.text() != first
    assert families(counter.text()) == families(library(tmp_path))
    files[103] = MmapedDict(str(tmp_path / "counter_103.db"))  # a new worker
    count(files, 103, "zot_repo_downloads", {"repo": "team/app-1"}, 10)
    assert families(counter.text()) == families(library(tmp_path))
    files.pop(103).close()
    (tmp_path / "counter_103.db").unlink()  # and its file gone (a fresh directory, say)
    (tmp_path / "counter_101.db").unlink()
    files[101].close()
    files[101] = MmapedDict(str(tmp_path / "counter_101.db"))  # a new file under the old name
    count(files, 101, "zot_repo_uploads", {"repo": "fresh"}, 1)
    assert families(counter.text()) == families(library(tmp_path))
    assert 'zot_repo_uploads_total{repo="fresh"} 1.0' in counter.text().decode()


def test_nothing_to_count(tmp_path: Path) -> None:
    assert CounterFiles(str(tmp_path)).text() == b""
    (tmp_path / "gauge_livesum_5.db").write_bytes(b"")  # other types are not its business
    assert CounterFiles(str(tmp_path)).text() == b""
