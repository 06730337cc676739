"""Which method serves each wire op: ``@handles(messages.X)`` on a component's method.

Registration happens when the defining module is imported; a second handler for the same
op is an error at import time. mypy checks each handler against its op's request and reply
types (:mod:`common.messages`). At start the server binds the registry to its component
instances (:func:`bind`): each op is then served by the bound method of the one component
whose class defines it.

An op registered with :func:`handles_in_order` (``upload.write``) is not a coroutine: the
server calls it synchronously in arrival order with a callback that sends the answer (see
``ShardServer.serve``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common.errors import RegistryError
from common.protocol import Answer, Frames, Op, Wire

Req = TypeVar("Req", bound=Mapping[str, Any])
Rep = TypeVar("Rep", bound=Mapping[str, Any])
#: The component (the handler method's ``self``).
C = TypeVar("C")

#: A handler method: ``(self, request, frames) -> (reply, frames)``.
HandlerMethod = Callable[[C, Req, Frames], Awaitable[Answer[Rep]]]
#: Sends the answer of an ordered op: its reply and frames, or the error.
Respond = Callable[[Answer[Rep] | RegistryError], None]
#: An ordered handler method: ``(self, request, raw frames, respond) -> None``.
OrderedMethod = Callable[[C, Req, Frames, Respond[Rep]], None]
#: A bound handler, as the server calls it.
Handler = Callable[[Any, Frames], Awaitable[Answer[Any]]]
OrderedHandler = Callable[[Any, Frames, Respond[Any]], None]

_MARK = "__shard_op__"
_REGISTERED: dict[Op, str] = {}
_ORDERED: set[Op] = set()


class HandlerConflict(RuntimeError):
    """Two handlers for one op, or an op no component serves."""


def _register(op: Op, fn: Callable[..., Any], ordered: bool) -> None:
    if op in _REGISTERED:
        raise HandlerConflict(f"{op} is already handled by {_REGISTERED[op]}, not also by {fn.__qualname__}")
    _REGISTERED[op] = f"{fn.__module__}.{fn.__qualname__}"
    if ordered:
        _ORDERED.add(op)
    setattr(fn, _MARK, op)


def handles(wire: Wire[Req, Rep]) -> Callable[[HandlerMethod[C, Req, Rep]], HandlerMethod[C, Req, Rep]]:
    """Register the decorated method as the handler of ``wire``'s op."""

    def register(fn: HandlerMethod[C, Req, Rep]) -> HandlerMethod[C, Req, Rep]:
        _register(wire.op, fn, ordered=False)
        return fn

    return register


def handles_in_order(wire: Wire[Req, Rep]) -> Callable[[OrderedMethod[C, Req, Rep]], OrderedMethod[C, Req, Rep]]:
    """Register the decorated method as the ordered handler of ``wire``'s op."""

    def register(fn: OrderedMethod[C, Req, Rep]) -> OrderedMethod[C, Req, Rep]:
        _register(wire.op, fn, ordered=True)
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
