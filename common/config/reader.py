"""The one reader of the JSON config: typed values out of an object, named by their full key path.

Every section parser walks the document with a :class:`Reader`, so that every bad value is
reported the same way, with the path of the key that holds it::

    http.auth.htpasswd.path: expected a string, got a number 7
    http.ratelimit.methods[1].rate: expected a positive number of requests per second

A missing key and an explicit ``null`` both give the default. Keys a section never read are
reported as warnings by :meth:`Reader.finish` (unknown keys, or zot keys shardreg ignores).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and says why."""


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Longest value quoted back in an error message.
_MAX_QUOTED = 40

UNKNOWN = "unknown option, ignored"
ZOT_ONLY = "zot option not supported by shardreg, ignored"


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number or a Go-style duration string (``"1h30m"``, ``"500ms"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got {describe(value)}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return float(value)
    if isinstance(value, str) and value:
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(value):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos == len(value):
            return total
    raise ConfigError(f"{key}: invalid duration {value!r} (use e.g. \"30s\", \"1h\")")


def describe(value: Any) -> str:
    """A JSON value as an error message names it: its type, and short scalars themselves."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    kind = "a string" if isinstance(value, str) else "a number" if isinstance(value, int | float) else "null"
    quoted = repr(value)
    return f"{kind} {quoted}" if value is not None and len(quoted) <= _MAX_QUOTED else kind


class Reader:
    """One JSON object of the config at ``path``; remembers which keys were read."""

    def __init__(self, data: Any, path: str, warnings: list[str]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'config'}: expected an object, got {describe(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.warnings = warnings
        self.used: set[str] = set()

    @property
    def present(self) -> bool:
        """The object was in the config and not empty."""
        return bool(self.data)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        """A :class:`ConfigError` for key ``name`` of this object."""
        return ConfigError(f"{self.key(name)}: {message}")

    def warn(self, name: str, message: str) -> None:
        self.warnings.append(f"{self.key(name)}: {message}" if name else f"{self.path}: {message}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def peek(self, name: str) -> Any:
        """The raw JSON value without counting it as read (it is still reported by :meth:`finish`)."""
        return self.data.get(name)

    def skip(self, *names: str) -> None:
        """Count ``names`` as read without reading them."""
        self.used.update(names)

    def value(self, name: str) -> Any:
        """The raw JSON value (``None`` when missing), for keys only checked for presence."""
        self.used.add(name)
        return self.data.get(name)

    def _get(self, name: str, accepts: tuple[type, ...], expected: str) -> Any:
        """The value at ``name`` if it is one of ``accepts`` (true/false is no number here), else raise."""
        value = self.value(name)
        if value is None:
            return None
        if not isinstance(value, accepts) or isinstance(value, bool) and bool not in accepts:
            raise self.error(name, f"expected {expected}, got {describe(value)}")
        return value

    # -- scalars ---------------------------------------------------------------------------------
    def string(self, name: str) -> str | None:
        value: str | None = self._get(name, (str,), "a string")
        return value

    def text(self, name: str, default: str) -> str:
        value = self.string(name)
        return default if value is None else value

    def flag(self, name: str, default: bool) -> bool:
        value: bool | None = self._get(name, (bool,), "true or false")
        return default if value is None else value

    def integer(self, name: str, default: int) -> int:
        """An integer; a string of digits counts (zot writes ports as strings)."""
        value = self.value(name)
        if isinstance(value, str) and value.isdigit():
            return int(value)
        number: int | None = self._get(name, (int,), "an integer")
        return default if number is None else number

    def number(self, name: str) -> float | None:
        value: int | float | None = self._get(name, (int, float), "a number")
        return None if value is None else float(value)

    def duration(self, name: str, default: float) -> float:
        value = self.value(name)
        return default if value is None else parse_duration(value, self.key(name))

    def strings(self, name: str) -> tuple[str, ...]:
        """A list of strings (missing → empty)."""
        value = self._get(name, (list,), "a list of strings")
        if value is None:
            return ()
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.key(name)}[{i}]: expected a string, got {describe(item)}")
        return tuple(value)

    # -- nested objects --------------------------------------------------------------------------
    def section(self, name: str) -> Reader:
        """The object at ``name`` (missing or null → an empty one)."""
        self.used.add(name)
        return Reader(self.data.get(name), self.key(name), self.warnings)

    def optional(self, name: str) -> Reader | None:
        """The object at ``name``, or None when it is missing or null."""
        self.used.add(name)
        return self.section(name) if self.has(name) else None

    def members(self, name: str) -> list[tuple[str, Reader]]:
        """An object of objects (``repositories``, ``groups``): each member's name and reader."""
        section = self.section(name)
        return [(member, section.section(member)) for member in section.data]

    def objects(self, name: str) -> list[Reader]:
        """A list of objects, each read at ``name[i]``."""
        items = self._get(name, (list,), "a list")
        return [Reader(item, f"{self.key(name)}[{i}]", self.warnings) for i, item in enumerate(items or [])]

    def finish(self, zot_only: Iterable[str] = (), unknown: str = UNKNOWN) -> None:
        """Warn about every key not read: ``zot_only`` keys with :data:`ZOT_ONLY`, others with ``unknown``."""
        skipped = set(zot_only)
        for name in self.data:
            if name not in self.used:
                self.warn(name, ZOT_ONLY if name in skipped else unknown)
