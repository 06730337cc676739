"""Which method serves each wire op: ``@handles(Op.X)`` on a component's method.

Registration happens when the defining module is imported; a second handler for the same
op is an error at import time. At start the server binds the registry to its component
instances (:func:`bind`): each op is then served by the bound method of the one component
whose class defines it.

An op registered with ``ordered=True`` (``upload.write``) is not a coroutine: the server
calls it synchronously in arrival order with a reply callback (see ``ShardServer.serve``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common.errors import RegistryError
from common.protocol import Op

Result = tuple[Any, list[Any]]
#: A bound handler: ``(args, frames) -> (result, frames)``.
Handler = Callable[[dict[str, Any], list[Any]], Awaitable[Result]]
#: Called with ``(result, frames)`` or the :class:`RegistryError` of an ordered op.
Reply = Callable[[Result | RegistryError], None]
#: A bound ordered handler: ``(args, raw frames, reply) -> None``.
OrderedHandler = Callable[[dict[str, Any], list[Any], Reply], None]
F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__shard_op__"
_REGISTERED: dict[Op, str] = {}
_ORDERED: set[Op] = set()


class HandlerConflict(RuntimeError):
    """Two handlers for one op, or an op bound twice."""


def handles(op: Op, *, ordered: bool = False) -> Callable[[F], F]:
    """Register the decorated method as the handler of ``op``."""

    def register(fn: F) -> F:
        if op in _REGISTERED:
            raise HandlerConflict(f"{op} is already handled by {_REGISTERED[op]}, not also by {fn.__qualname__}")
        _REGISTERED[op] = f"{fn.__module__}.{fn.__qualname__}"
        if ordered:
            _ORDERED.add(op)
        setattr(fn, _MARK, op)
        return fn

    return register


def registered() -> dict[Op, str]:
    """Every op with a handler, and the handler's qualified name."""
    return dict(_REGISTERED)


@dataclass
class Bound:
    handlers: dict[Op, Handler] = field(default_factory=dict)
    ordered: dict[Op, OrderedHandler] = field(default_factory=dict)

    def __contains__(self, op: Op) -> bool:
        return op in self.handlers or op in self.ordered


def bind(*components: object) -> Bound:
    """The handlers of ``components``' classes, bound to them; every registered op must be served."""
    bound = Bound()
    for component in components:
        cls = type(component)
        for name in dir(cls):
            op = getattr(getattr(cls, name, None), _MARK, None)
            if op is None:
                continue
            if op in bound:
                raise HandlerConflict(f"{op} is served by two components")
            method = getattr(component, name)
            if op in _ORDERED:
                bound.ordered[op] = method
            else:
                bound.handlers[op] = method
    unbound = sorted(set(_REGISTERED) - set(bound.handlers) - set(bound.ordered))
    if unbound:
        raise HandlerConflict(f"no component serves {', '.join(unbound)}")
    return bound
