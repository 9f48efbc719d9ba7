"""Search filters: MLflow's filter grammar plus ``OR`` and parentheses.

A filter is parsed once, validated against the kind of object searched (runs,
experiments, registered models, model versions), and handed to a store as a small immutable AST::

    expr       := or_expr
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := atom ("AND" atom)*
    atom       := "(" expr ")" | comparison
    comparison := identifier comparator value

Keywords are case-insensitive and ``AND`` binds tighter than ``OR``.

Identifiers are ``<entity>.<key>``; the key is bare (``tags.mlflow.runName``),
back-quoted (``tags.`my key` ``) or double-quoted (``metrics."x"``). An
identifier without an entity is an attribute (``run_name``, `` `Run name` ``).

Quoted text (values and quoted keys) may contain its own quote doubled (``'it''s'``)
or escaped (``'it\\'s'``); ``\\\\`` is one backslash. Any other backslash is kept
as is, so a LIKE pattern such as ``'10\\%'`` reaches the database unchanged and
still means a literal ``%``.

Positions in error messages are 0-based character offsets into the filter text.

>>> parse_filter("metrics.acc > 0.9 AND (params.lr = '0.1' OR tags.team ILIKE 'ml%')")
... # doctest: +NORMALIZE_WHITESPACE
And(clauses=(Comparison(entity='metric', key='acc', op='>', value=0.9),
             Or(clauses=(Comparison(entity='param', key='lr', op='=', value='0.1'),
                         Comparison(entity='tag', key='team', op='ILIKE', value='ml%')))))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NoReturn, TypeAlias

from keel.errors import FilterSyntaxError, InvalidParameter

# ---------------------------------------------------------------------------
# AST

Value: TypeAlias = "str | int | float | tuple[str, ...] | None"


@dataclass(frozen=True, slots=True)
class Comparison:
    """``<entity>.<key> <op> <value>`` with entity, key and op in canonical form.

    ``entity`` is one of ``metric``, ``param``, ``tag``, ``attribute``, ``dataset``;
    ``op`` is upper case (``LIKE``, ``NOT IN``, ``IS NULL``) and ``<>`` becomes ``!=``.
    Numbers keep the literal's type: ``1`` is an int (exact for large timestamps),
    ``1.0`` a float. ``value`` is None for ``IS NULL`` / ``IS NOT NULL``.
    """

    entity: str
    key: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class And:
    """All clauses hold. A parenthesised group stays one nested clause."""

    clauses: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one clause holds."""

    clauses: tuple[Expr, ...]


Expr: TypeAlias = "Comparison | And | Or"

# ---------------------------------------------------------------------------
# What each kind of search accepts.

NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
EQUALITY_OPS = frozenset({"=", "!="})
PATTERN_OPS = frozenset({"LIKE", "ILIKE"})
LIST_OPS = frozenset({"IN", "NOT IN"})
NULL_OPS = frozenset({"IS NULL", "IS NOT NULL"})

# Display order of comparators in error messages.
_OP_ORDER = (
    *("=", "!=", "<", "<=", ">", ">="),
    *("LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"),
)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one searchable field may be compared: its value type and comparators."""

    value_type: Literal["number", "string"]
    ops: frozenset[str]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """The searchable fields of one kind of object.

    ``keyed`` entities accept any key (``metrics.<anything>``); ``fixed`` entities
    have a closed set of keys. ``key_aliases`` and ``forbidden_keys`` apply to the
    fixed entities, keyed by entity.
    """

    name: str
    entity_aliases: Mapping[str, str]
    keyed: Mapping[str, FieldRule]
    fixed: Mapping[str, Mapping[str, FieldRule]]
    key_aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    forbidden_keys: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def entity_names(self) -> list[str]:
        """Canonical entities as written in filters, e.g. ``['metrics', 'params']``."""
        canonical = dict.fromkeys(self.entity_aliases.values())
        return [_ENTITY_PREFIX[entity] for entity in canonical]


_NUMBER = FieldRule("number", NUMERIC_OPS)
_STRING = FieldRule("string", EQUALITY_OPS | PATTERN_OPS)
_STRING_LIST = FieldRule("string", EQUALITY_OPS | PATTERN_OPS | LIST_OPS)
_KEYED_STRING = FieldRule("string", EQUALITY_OPS | PATTERN_OPS | NULL_OPS)

RUN_ENTITY_ALIASES: Mapping[str, str] = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}

RUNS = KindSpec(
    name="runs",
    entity_aliases=RUN_ENTITY_ALIASES,
    keyed={"metric": _NUMBER, "param": _KEYED_STRING, "tag": _KEYED_STRING},
    fixed={
        "attribute": {
            "run_id": _STRING_LIST,
            "run_name": _STRING,
            "status": _STRING,
            "user_id": _STRING,
            "artifact_uri": _STRING,
            "start_time": _NUMBER,
            "end_time": _NUMBER,
        },
        "dataset": {"name": _STRING_LIST, "digest": _STRING_LIST, "context": _STRING_LIST},
    },
    key_aliases={
        "attribute": {
            "created": "start_time",
            "Created": "start_time",
            "Run name": "run_name",
            "run name": "run_name",
        }
    },
    forbidden_keys={
        "attribute": {
            "lifecycle_stage": "choose deleted or active runs with the run view type instead",
            "experiment_id": "choose experiments with the experiment ids of the search instead",
        }
    },
)

EXPERIMENTS = KindSpec(
    name="experiments",
    entity_aliases={
        "attribute": "attribute",
        "attributes": "attribute",
        "attr": "attribute",
        "tag": "tag",
        "tags": "tag",
    },
    keyed={"tag": _KEYED_STRING},
    fixed={
        "attribute": {
            "name": _STRING,
            "experiment_id": FieldRule("string", EQUALITY_OPS | LIST_OPS),
            "creation_time": _NUMBER,
            "last_update_time": _NUMBER,
        }
    },
    forbidden_keys={
        "attribute": {
            "lifecycle_stage": "choose deleted or active experiments with the view type instead"
        }
    },
)

# The registry kinds follow MLflow's registry search (docs: research/mlflow-wire.md §5),
# plus OR and parentheses. Their tags take no IS NULL; instead ``!=`` also holds for
# an object without the tag (see keel.store.sql.registry_search).
_REGISTRY_ENTITY_ALIASES: Mapping[str, str] = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "tag": "tag",
    "tags": "tag",
}
_REGISTRY_TAG = FieldRule("string", EQUALITY_OPS | PATTERN_OPS)
_SORT_ONLY = "it can only be used in order_by"

REGISTERED_MODELS = KindSpec(
    name="registered_models",
    entity_aliases=_REGISTRY_ENTITY_ALIASES,
    keyed={"tag": _REGISTRY_TAG},
    fixed={"attribute": {"name": _STRING_LIST}},
    forbidden_keys={
        "attribute": {
            key: f"registered models are filtered by name and tags only; {_SORT_ONLY}"
            for key in ("timestamp", "creation_timestamp", "last_updated_timestamp")
        }
    },
)

MODEL_VERSIONS = KindSpec(
    name="model_versions",
    entity_aliases=_REGISTRY_ENTITY_ALIASES,
    keyed={"tag": _REGISTRY_TAG},
    fixed={
        "attribute": {
            "name": _STRING_LIST,
            "run_id": _STRING_LIST,
            "version_number": _NUMBER,
            "source_path": _STRING,
        }
    },
    forbidden_keys={
        "attribute": {
            "current_stage": "stages are not searchable (as in MLflow); ask "
            "get_latest_versions for the newest version in a stage",
            "creation_timestamp": _SORT_ONLY,
            "last_updated_timestamp": _SORT_ONLY,
        }
    },
)

# MLflow 3's logged models (research/mlflow-wire.md §5): params and tags take
# ``= != LIKE ILIKE`` with the registry's meaning of ``!=`` (a model without the
# key is "not equal"); ``status`` compares the stored wire name
# (``'LOGGED_MODEL_READY'``).
LOGGED_MODELS = KindSpec(
    name="logged_models",
    entity_aliases={
        **_REGISTRY_ENTITY_ALIASES,
        "metric": "metric",
        "metrics": "metric",
        "param": "param",
        "params": "param",
    },
    keyed={"metric": _NUMBER, "param": _REGISTRY_TAG, "tag": _REGISTRY_TAG},
    fixed={
        "attribute": {
            "name": _STRING_LIST,
            "model_id": _STRING_LIST,
            "model_type": _STRING_LIST,
            "status": _STRING_LIST,
            "source_run_id": _STRING_LIST,
            "creation_time": _NUMBER,
            "last_updated_time": _NUMBER,
        }
    },
    key_aliases={
        "attribute": {
            "creation_timestamp": "creation_time",
            "last_updated_timestamp": "last_updated_time",
        }
    },
)

KINDS: Mapping[str, KindSpec] = {
    "runs": RUNS,
    "experiments": EXPERIMENTS,
    "registered_models": REGISTERED_MODELS,
    "model_versions": MODEL_VERSIONS,
    "logged_models": LOGGED_MODELS,
}

# Plural entity names used when formatting, so the text reads like MLflow's docs.
_ENTITY_PREFIX = {
    "metric": "metrics",
    "param": "params",
    "tag": "tags",
    "attribute": "attributes",
    "dataset": "datasets",
}


def kind_spec(kind: str) -> KindSpec:
    """The :class:`KindSpec` for ``kind``; a ValueError names the known kinds.

    >>> kind_spec("runs").name
    'runs'
    """
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"Unknown search kind {kind!r}; known kinds: {sorted(KINDS)}") from None


# ---------------------------------------------------------------------------
# Tokenizer

TokenKind = Literal["ident", "keyword", "op", "string", "number", "punct", "end"]

KEYWORDS = frozenset({"AND", "OR", "NOT", "LIKE", "ILIKE", "IN", "IS", "NULL"})
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_QUOTES = "'\"`"


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token.

    ``value`` is the decoded string of a quoted value, the number of a numeric
    literal, or the upper-cased keyword / operator. Identifiers carry ``entity``
    (None without a prefix) and ``key``.
    """

    kind: TokenKind
    text: str
    pos: int
    value: str | int | float | None = None
    entity: str | None = None
    key: str = ""

    def describe(self) -> str:
        return "end of input" if self.kind == "end" else repr(self.text)


def _syntax_error(what: str, text: str, pos: int, problem: str) -> FilterSyntaxError:
    return FilterSyntaxError(f'Invalid {what} "{text}": {problem}', text=text, position=pos)


def tokenize(text: str, what: str = "filter") -> list[Token]:
    """Split ``text`` into tokens, ending with an ``end`` token.

    ``what`` names the text in error messages ("filter", "order_by clause").

    >>> [t.kind for t in tokenize("tags.`a b` != 'x'")]
    ['ident', 'op', 'string', 'end']
    """
    tokens: list[Token] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            tokens.append(Token("end", "", len(text)))
            return tokens
        token = _next_token(text, i, what)
        tokens.append(token)
        i = token.pos + len(token.text)


def _next_token(text: str, i: int, what: str) -> Token:
    ch = text[i]
    if ch in "(),":
        return Token("punct", ch, i, ch)
    for op in _OPERATORS:
        if text.startswith(op, i):
            return Token("op", op, i, "!=" if op == "<>" else op)
    if ch in "'\"":
        value, end = _read_quoted(text, i, what)
        return Token("string", text[i:end], i, value)
    if ch == "`":
        key, end = _read_quoted(text, i, what)
        return Token("ident", text[i:end], i, entity=None, key=key)
    number = _NUMBER_RE.match(text, i)
    if number:
        return _number_token(text, i, number.group(), what)
    word = _WORD_RE.match(text, i)
    if word:
        return _word_token(text, i, word.group(), what)
    problem = f"unexpected character {ch!r} at position {i}"
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        # Most likely a key such as tags.a-b that needed quoting.
        problem += "; back-quote keys that contain it, e.g. tags.`my-key`"
    raise _syntax_error(what, text, i, problem)


def _read_quoted(text: str, start: int, what: str) -> tuple[str, int]:
    """Decode the quoted text opening at ``start``; return it and the end offset."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif ch == quote and text.startswith(quote * 2, i):
            out.append(quote)
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    kind = "identifier" if quote == "`" else "string"
    raise _syntax_error(
        what, text, start, f"unterminated {kind} starting at position {start}; missing {quote}"
    )


def _number_token(text: str, i: int, literal: str, what: str) -> Token:
    end = i + len(literal)
    if end < len(text) and (text[end].isalnum() or text[end] in "_."):
        bad = _WORD_RE.match(text, end)
        bad_text = literal + (bad.group() if bad else text[end])
        raise _syntax_error(what, text, i, f"invalid number {bad_text!r} at position {i}")
    number: int | float = int(literal) if re.fullmatch(r"[+-]?\d+", literal) else float(literal)
    if not math.isfinite(float(number)):
        raise _syntax_error(what, text, i, f"number {literal} at position {i} is out of range")
    return Token("number", literal, i, number)


def _word_token(text: str, i: int, word: str, what: str) -> Token:
    end = i + len(word)
    if word.endswith(".") and end < len(text) and text[end] in '"`':
        # `tags.`my key`` / `metrics."x"`: a prefix glued to a quoted key.
        key, key_end = _read_quoted(text, end, what)
        return Token("ident", text[i:key_end], i, entity=word[:-1], key=key)
    if word.upper() in KEYWORDS:
        return Token("keyword", word, i, word.upper())
    entity, dot, key = word.partition(".")
    if not dot:
        return Token("ident", word, i, entity=None, key=word)
    if not key:
        raise _syntax_error(what, text, i, f"missing key after {word!r} at position {i}")
    return Token("ident", word, i, entity=entity, key=key)


# ---------------------------------------------------------------------------
# Parser


def parse_filter(text: str | None, kind: str = "runs") -> Expr | None:
    """Parse and validate a search filter; None for an empty filter.

    Raises :class:`~keel.errors.FilterSyntaxError` for text that does not parse
    and :class:`~keel.errors.InvalidParameter` for a well-formed clause the
    kind of search does not accept (unknown entity, wrong comparator or type).

    >>> parse_filter("created > 0 OR run_name LIKE 'a%'")
    ... # doctest: +NORMALIZE_WHITESPACE
    Or(clauses=(Comparison(entity='attribute', key='start_time', op='>', value=0),
                Comparison(entity='attribute', key='run_name', op='LIKE', value='a%')))
    >>> parse_filter("  ") is None
    True
    """
    spec = kind_spec(kind)
    if text is None or not text.strip():
        return None
    return _Parser(text, spec).parse()


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str, spec: KindSpec) -> None:
        self.text = text
        self.spec = spec
        self.tokens = tokenize(text)
        self.index = 0

    def parse(self) -> Expr:
        expr = self._or_expr()
        token = self._peek()
        if token.kind == "punct" and token.text == ")":
            self._fail(token, "there is no '(' for it to close")
        if token.kind != "end":
            self._fail(token, "expected AND, OR or the end of the filter")
        return expr

    # -- helpers --------------------------------------------------------------

    def _peek(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _at_keyword(self, word: str) -> bool:
        token = self._peek()
        return token.kind == "keyword" and token.value == word

    def _fail(self, token: Token, expected: str) -> NoReturn:
        raise _syntax_error(
            "filter",
            self.text,
            token.pos,
            f"unexpected {token.describe()} at position {token.pos}; {expected}",
        )

    def _semantic_error(self, token: Token, problem: str) -> InvalidParameter:
        return InvalidParameter(
            f'Invalid filter "{self.text}": {problem} (at position {token.pos})'
        )

    # -- grammar --------------------------------------------------------------

    def _or_expr(self) -> Expr:
        clauses = [self._and_expr()]
        while self._at_keyword("OR"):
            self._advance()
            clauses.append(self._and_expr())
        return clauses[0] if len(clauses) == 1 else Or(tuple(clauses))

    def _and_expr(self) -> Expr:
        clauses = [self._atom()]
        while self._at_keyword("AND"):
            self._advance()
            clauses.append(self._atom())
        return clauses[0] if len(clauses) == 1 else And(tuple(clauses))

    def _atom(self) -> Expr:
        token = self._peek()
        if token.kind == "punct" and token.text == "(":
            self._advance()
            expr = self._or_expr()
            closing = self._peek()
            if not (closing.kind == "punct" and closing.text == ")"):
                self._fail(closing, f"expected ')' to close the '(' at position {token.pos}")
            self._advance()
            return expr
        if token.kind != "ident":
            self._fail(token, "expected an identifier such as metrics.acc, or '('")
        return self._comparison()

    def _comparison(self) -> Comparison:
        ident = self._advance()
        op = self._comparator()
        value = self._value(op)
        return self._validate(ident, op, value)

    def _comparator(self) -> str:
        token = self._advance()
        if token.kind == "op":
            return str(token.value)
        if token.kind == "keyword" and token.value in ("LIKE", "ILIKE", "IN"):
            return str(token.value)
        if token.kind == "keyword" and token.value == "NOT":
            if not self._at_keyword("IN"):
                self._fail(self._peek(), "expected IN after NOT")
            self._advance()
            return "NOT IN"
        if token.kind == "keyword" and token.value == "IS":
            negated = self._at_keyword("NOT")
            if negated:
                self._advance()
            if not self._at_keyword("NULL"):
                self._fail(self._peek(), "expected NULL")
            self._advance()
            return "IS NOT NULL" if negated else "IS NULL"
        self._fail(
            token, "expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS)"
        )

    def _value(self, op: str) -> tuple[Token, Value | list[str | int | float]]:
        if op in NULL_OPS:
            return self.tokens[self.index - 1], None
        if op in LIST_OPS:
            return self._value_list()
        token = self._advance()
        if token.kind not in ("string", "number"):
            self._fail(token, "expected a value (a quoted string or a number)")
        assert token.value is not None
        return token, token.value

    def _value_list(self) -> tuple[Token, list[str | int | float]]:
        opening = self._advance()
        if not (opening.kind == "punct" and opening.text == "("):
            self._fail(opening, "expected '(' to start a list of values")
        items: list[str | int | float] = []
        while True:
            token = self._advance()
            if token.kind not in ("string", "number"):
                self._fail(token, "expected a value (a quoted string or a number)")
            assert token.value is not None
            items.append(token.value)
            separator = self._advance()
            if separator.kind == "punct" and separator.text == ")":
                return opening, items
            if not (separator.kind == "punct" and separator.text == ","):
                self._fail(separator, "expected ',' or ')'")

    # -- validation -----------------------------------------------------------

    def _validate(
        self, ident: Token, op: str, raw: tuple[Token, Value | list[str | int | float]]
    ) -> Comparison:
        try:
            entity, key, rule = resolve_identifier(self.spec, ident)
        except FieldProblem as exc:
            raise self._semantic_error(ident, str(exc)) from None
        name = f"{entity} {key!r}"
        if op not in rule.ops:
            allowed = ", ".join(o for o in _OP_ORDER if o in rule.ops)
            raise self._semantic_error(
                ident, f"invalid comparator {op!r} for {name}; allowed comparators: {allowed}"
            )
        value_token, value = raw
        return Comparison(entity, key, op, self._typed_value(value_token, name, rule, op, value))

    def _typed_value(
        self,
        token: Token,
        name: str,
        rule: FieldRule,
        op: str,
        value: Value | list[str | int | float],
    ) -> Value:
        if value is None:
            return None
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise self._semantic_error(
                    token, f"expected a list of quoted strings for {name} {op}"
                )
            return tuple(str(item) for item in value)
        if rule.value_type == "number":
            if isinstance(value, str):
                raise self._semantic_error(
                    token, f"expected a numeric value for {name}; found quoted {value!r}"
                )
            return value
        if not isinstance(value, str):
            raise self._semantic_error(
                token, f"expected a quoted string value for {name}; found {token.text}"
            )
        if op in PATTERN_OPS and _ends_with_lone_escape(value):
            raise self._semantic_error(
                token,
                f"{op} pattern {value!r} ends with an unescaped backslash; "
                "write \\\\ for a literal backslash",
            )
        return value


class FieldProblem(ValueError):
    """An identifier that names nothing searchable; callers add the surrounding text."""


def resolve_identifier(spec: KindSpec, ident: Token) -> tuple[str, str, FieldRule]:
    """Canonical entity and key of an identifier token, and the rule for that field.

    >>> resolve_identifier(RUNS, tokenize("created")[0])[:2]
    ('attribute', 'start_time')
    """
    if ident.entity is None:
        entity = "attribute"
    else:
        found = spec.entity_aliases.get(ident.entity.lower())
        if found is None:
            valid = ", ".join(spec.entity_names())
            raise FieldProblem(
                f"unknown entity {ident.entity!r} in {ident.text!r}; "
                f"valid entities for {spec.name} are {valid} (singular forms work too)"
            )
        entity = found
    key = ident.key
    if not key:
        raise FieldProblem(f"empty key in {ident.text!r}")
    if entity in spec.keyed:
        return entity, key, spec.keyed[entity]
    key = spec.key_aliases.get(entity, {}).get(key, key)
    fields = spec.fixed[entity]
    if key in fields:
        return entity, key, fields[key]
    reason = spec.forbidden_keys.get(entity, {}).get(key)
    if reason is not None:
        raise FieldProblem(f"{entity} {key!r} cannot be used in a search; {reason}")
    valid = ", ".join(sorted(fields))
    raise FieldProblem(f"invalid {entity} key {key!r}; valid {entity} keys are {valid}")


def _ends_with_lone_escape(pattern: str) -> bool:
    """True when a LIKE pattern ends in a backslash that escapes nothing."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


# ---------------------------------------------------------------------------
# Formatter

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


def format_filter(expr: Expr) -> str:
    """Canonical filter text; ``parse_filter(format_filter(e)) == e``.

    >>> format_filter(parse_filter("tag.`a b` = 'x' and (metric.m > 1 or run_name <> 'y')"))
    "tags.`a b` = 'x' AND (metrics.m > 1 OR attributes.run_name != 'y')"
    """
    if isinstance(expr, Comparison):
        return _format_comparison(expr)
    if isinstance(expr, And):
        # Nested groups keep their parentheses so the AST shape survives a round trip.
        return " AND ".join(
            f"({format_filter(c)})" if isinstance(c, (And, Or)) else format_filter(c)
            for c in expr.clauses
        )
    return " OR ".join(
        f"({format_filter(c)})" if isinstance(c, Or) else format_filter(c) for c in expr.clauses
    )


def format_identifier(entity: str, key: str) -> str:
    """``<entity>.<key>`` with the key back-quoted unless it is a plain dotted name.

    >>> format_identifier("tag", "mlflow.runName"), format_identifier("param", "a-b")
    ('tags.mlflow.runName', 'params.`a-b`')
    """
    prefix = _ENTITY_PREFIX[entity]
    if _BARE_KEY_RE.fullmatch(key):
        return f"{prefix}.{key}"
    return f"{prefix}.{quote_text(key, '`')}"


def quote_text(value: str, quote: str = "'") -> str:
    """Quote ``value`` so the tokenizer decodes it back unchanged.

    >>> print(quote_text("it's \\\\ ok"))
    'it''s \\\\ ok'
    """
    escaped = value.replace("\\", "\\\\").replace(quote, quote * 2)
    return f"{quote}{escaped}{quote}"


def _format_comparison(c: Comparison) -> str:
    left = f"{format_identifier(c.entity, c.key)} {c.op}"
    if c.value is None:
        return left
    return f"{left} {_format_value(c.value)}"


def _format_value(value: str | int | float | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(quote_text(v) for v in value) + ")"
    if isinstance(value, str):
        return quote_text(value)
    return repr(value)
