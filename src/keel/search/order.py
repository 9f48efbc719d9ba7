"""``order_by`` clauses: one ``<identifier> [ASC|DESC]`` per list element.

Identifiers follow the filter grammar (entity aliases, quoting, attribute
aliases such as ``created``), so ``tags.`mlflow.runName` desc`` and
``metrics."val loss"`` both work. As in MLflow, a list element holds exactly one
clause: ``"metrics.x DESC, params.p"`` is rejected rather than silently split.

>>> parse_order_by(["metrics.acc DESC", "created"])  # doctest: +NORMALIZE_WHITESPACE
(OrderKey(entity='metric', key='acc', ascending=False),
 OrderKey(entity='attribute', key='start_time', ascending=True))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keel.errors import FilterSyntaxError, InvalidParameter
from keel.search.filter import (
    FieldProblem,
    KindSpec,
    Token,
    format_identifier,
    kind_spec,
    resolve_identifier,
    tokenize,
)


@dataclass(frozen=True, slots=True)
class OrderKey:
    """Sort by ``entity``/``key`` (canonical names, as in filter comparisons)."""

    entity: str
    key: str
    ascending: bool


# What each kind can be sorted by: keyed entities accept any key; ``attribute``
# lists its keys. Datasets are filterable but not sortable, as in MLflow.
SORTABLE: Mapping[str, Mapping[str, frozenset[str] | None]] = {
    "runs": {
        "metric": None,
        "param": None,
        "tag": None,
        "attribute": frozenset(
            {"start_time", "end_time", "run_name", "run_id", "status", "user_id", "artifact_uri"}
        ),
    },
    "experiments": {
        "attribute": frozenset({"name", "experiment_id", "creation_time", "last_update_time"}),
    },
    "registered_models": {
        "attribute": frozenset({"name", "creation_timestamp", "last_updated_timestamp"}),
    },
    "model_versions": {
        "attribute": frozenset(
            {"name", "version_number", "creation_timestamp", "last_updated_timestamp"}
        ),
    },
    "logged_models": {
        "metric": None,
        "attribute": frozenset(
            {"name", "model_id", "model_type", "status", "source_run_id"}
            | {"creation_time", "last_updated_time"}
        ),
    },
}

# Attributes the registry sorts by but does not filter on (as in MLflow), by the
# names a clause may use. ``timestamp`` is MLflow's name for a model's creation time.
SORT_ONLY: Mapping[str, Mapping[str, str]] = {
    "registered_models": {
        "timestamp": "creation_timestamp",
        "creation_timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
    },
    "model_versions": {
        "creation_timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
    },
}


def parse_order_by(clauses: Sequence[str] | None, kind: str = "runs") -> tuple[OrderKey, ...]:
    """Parse ``order_by`` strings; an empty or missing list gives ``()``.

    Raises :class:`~keel.errors.FilterSyntaxError` for a clause that does not
    parse and :class:`~keel.errors.InvalidParameter` for a field that cannot be
    sorted on.

    >>> parse_order_by(["name DESC"], kind="experiments")
    (OrderKey(entity='attribute', key='name', ascending=False),)
    """
    kind_spec(kind)  # reject an unknown kind even with no clauses
    return tuple(_parse_clause(clause, kind) for clause in clauses or ())


def format_order_key(key: OrderKey) -> str:
    """Canonical clause text that parses back to ``key``.

    >>> format_order_key(OrderKey("tag", "a b", False))
    'tags.`a b` DESC'
    """
    return f"{format_identifier(key.entity, key.key)} {'ASC' if key.ascending else 'DESC'}"


def _parse_clause(clause: str, kind: str) -> OrderKey:
    tokens = tokenize(clause, what="order_by clause")
    ident = tokens[0]
    if ident.kind == "end":
        raise _clause_error(clause, ident, "the clause is empty; expected a field to sort by")
    if ident.kind != "ident":
        raise _clause_error(clause, ident, "expected a field such as metrics.acc or start_time")
    ascending, rest = _direction(clause, tokens[1:])
    if rest.kind == "punct" and rest.text == ",":
        raise _clause_error(
            clause, rest, "each order_by element holds one clause; pass several elements instead"
        )
    if rest.kind != "end":
        expected = "the end of the clause"
        if rest is tokens[1]:  # no direction was given, so one would also fit here
            expected = "ASC, DESC or " + expected
        raise _clause_error(clause, rest, f"expected {expected}")
    entity, key = _sortable_field(clause, ident, kind)
    return OrderKey(entity, key, ascending)


def _direction(clause: str, tokens: list[Token]) -> tuple[bool, Token]:
    """The sort direction and the token after it (ASC when none is given)."""
    token = tokens[0]
    if token.kind == "ident" and token.entity is None and token.text == token.key:
        word = token.key.upper()
        if word in ("ASC", "DESC"):
            return word == "ASC", tokens[1]
        raise _clause_error(clause, token, "expected ASC or DESC")
    return True, token


def _sortable_field(clause: str, ident: Token, kind: str) -> tuple[str, str]:
    spec = kind_spec(kind)
    sort_only = SORT_ONLY.get(kind, {})
    sortable = SORTABLE[kind]
    if ident.key in sort_only and _is_attribute(spec, ident):
        return "attribute", sort_only[ident.key]
    try:
        entity, key, _rule = resolve_identifier(spec, ident)
    except FieldProblem as exc:
        # The filter's list of valid keys is not the whole story when some keys sort only.
        names = ", ".join(sorted(sortable["attribute"] or ()))
        hint = f"; {kind.replace('_', ' ')} can be sorted by {names}" if sort_only else ""
        raise InvalidParameter(f'Invalid order_by clause "{clause}": {exc}{hint}') from None
    if entity not in sortable:
        raise InvalidParameter(
            f'Invalid order_by clause "{clause}": {kind} cannot be sorted by {entity}s; '
            f"sortable entities are {', '.join(sorted(sortable))}"
        )
    keys = sortable[entity]
    if keys is not None and key not in keys:
        raise InvalidParameter(
            f'Invalid order_by clause "{clause}": {kind} cannot be sorted by {entity} '
            f"{key!r}; sortable {entity} keys are {', '.join(sorted(keys))}"
        )
    return entity, key


def _clause_error(clause: str, token: Token, problem: str) -> FilterSyntaxError:
    return FilterSyntaxError(
        f'Invalid order_by clause "{clause}": unexpected {token.describe()} '
        f"at position {token.pos}; {problem}",
        text=clause,
        position=token.pos,
    )


def _is_attribute(spec: KindSpec, ident: Token) -> bool:
    return ident.entity is None or spec.entity_aliases.get(ident.entity.lower()) == "attribute"
