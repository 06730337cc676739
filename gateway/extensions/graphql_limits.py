"""Bounds on the work one GraphQL request may ask for (search, ``/v2/_zot/ext/search``).

A query is checked before any resolver runs, so a refused query costs a parse and a walk of its
syntax tree, nothing more:

* the source: at most ``MAX_TOKENS`` tokens (graphql-core stops parsing there);
* depth: fields nested at most ``MAX_DEPTH`` levels (fragments expanded);
* aliases: at most ``MAX_ALIASES`` aliased fields (each alias of a root field is another
  scatter to every shard: 5,000 of them held a worker for 23 s);
* cost: the number of fields the answer would have, fragments expanded (a fragment spread
  twice counts twice), where each root field — one scatter to the shards — counts
  ``ROOT_FIELD_COST``; at most ``MAX_COST``.

A refused query is answered as any invalid query: HTTP 422 with a GraphQL ``errors`` list.
Request bodies and ``variables`` are parsed with a nesting limit (:mod:`common.boundedjson`).

:class:`ErrorLog` is the logger ariadne reports errors to: a client's bad query is not the
registry's error, so only failures of the registry itself are logged with a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import ValidationRule

from common.errors import RegistryError

MAX_TOKENS = 10_000
MAX_DEPTH = 20
MAX_ALIASES = 30
MAX_COST = 1_000
ROOT_FIELD_COST = 25
#: Nesting allowed in a JSON request body (``{"variables": {"filter": {...}}}`` needs 3).
MAX_JSON_DEPTH = 16


def parse_query(_context: Any, data: dict[str, Any]) -> DocumentNode:
    """ariadne's ``query_parser``: graphql-core's parser with a token limit."""
    return parse(data["query"], max_tokens=MAX_TOKENS)


@dataclass
class Load:
    """What a selection set asks for: its depth, aliases and fields (fragments expanded)."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0

    def add(self, other: Load) -> None:
        self.depth = max(self.depth, other.depth)
        self.aliases += other.aliases
        self.fields += other.fields


class _Walker:
    """Measures selection sets; fragments are measured once (memoized), cycles count as nothing
    (graphql-core's NoFragmentCyclesRule reports them)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.fragments: dict[tuple[str, bool], Load] = {}
        self.visiting: set[str] = set()

    def selection_set(self, node: SelectionSetNode | None, level: int, root: bool = False) -> Load:
        """``root``: the operation's own selections, where each field is a query to the shards."""
        load = Load()
        if node is None or level > MAX_DEPTH:
            return load  # deeper than allowed: already too deep, no need to look further
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                inner = self.selection_set(selection.selection_set, level + 1)
                load.add(Load(depth=inner.depth + 1, aliases=inner.aliases + (selection.alias is not None),
                              fields=inner.fields + (ROOT_FIELD_COST if root else 1)))
            elif isinstance(selection, InlineFragmentNode):
                load.add(self.selection_set(selection.selection_set, level, root))
            elif isinstance(selection, FragmentSpreadNode):
                load.add(self.fragment(selection.name.value, level, root))
        return load

    def fragment(self, name: str, level: int, root: bool) -> Load:
        if (name, root) in self.fragments:
            return self.fragments[(name, root)]
        definition = self.context.get_fragment(name)
        if definition is None or name in self.visiting:
            return Load()
        self.visiting.add(name)
        try:  # measured from its own top; a fragment used deep down may still exceed MAX_DEPTH there
            load = self.selection_set(definition.selection_set, 0, root)
        finally:
            self.visiting.discard(name)
        self.fragments[(name, root)] = load
        return load


class QueryBoundsRule(ValidationRule):
    """Refuses operations deeper, with more aliases or costlier than the limits above."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
        try:
            load = _Walker(self.context).selection_set(node.selection_set, 0, root=True)
        except RecursionError:
            self.report_error(GraphQLError("query refused: it nests fragments too deeply", node))
            return
        problems = []
        if load.depth > MAX_DEPTH:
            problems.append(f"it nests fields deeper than {MAX_DEPTH} levels")
        if load.aliases > MAX_ALIASES:
            problems.append(f"it has {load.aliases} aliases, more than {MAX_ALIASES}")
        if load.fields > MAX_COST:
            problems.append(f"its cost {load.fields} exceeds {MAX_COST} (each field counts 1, "
                            f"each query field {ROOT_FIELD_COST})")
        if problems:
            self.report_error(GraphQLError("query refused: " + "; ".join(problems), node))


VALIDATION_RULES = (QueryBoundsRule,)


class ErrorLog(logging.LoggerAdapter):
    """ariadne's ``logger``: client errors at debug, shard errors as warnings, bugs with a traceback."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        original = getattr(error, "original_error", None)
        if original is None or isinstance(original, GraphQLError):
            self.logger.debug("graphql request refused: %s", str(msg)[:500])
        elif isinstance(original, RegistryError):
            self.logger.warning("graphql resolver failed: %s", str(original)[:500])
        else:
            self.logger.error("graphql resolver failed: %s", str(msg)[:500], exc_info=original)
