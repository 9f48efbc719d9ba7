"""The filter grammar: parsing, validation per search kind, errors and formatting."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import FilterSyntaxError, InvalidParameter
from keel.search.filter import (
    LIST_OPS,
    NULL_OPS,
    PATTERN_OPS,
    RUNS,
    And,
    Comparison,
    Expr,
    FieldRule,
    Or,
    format_filter,
    parse_filter,
    tokenize,
)


def cmp(entity: str, key: str, op: str, value: object) -> Comparison:
    return Comparison(entity, key, op, value)  # type: ignore[arg-type]


# -- basics -------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_empty_filter_is_none(text: str | None) -> None:
    assert parse_filter(text) is None
    assert parse_filter(text, kind="experiments") is None


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="runs"):
        parse_filter("name = 'x'", kind="models")


def test_single_comparison() -> None:
    assert parse_filter("metrics.acc > 0.9") == cmp("metric", "acc", ">", 0.9)


@pytest.mark.parametrize(
    ("prefix", "entity"),
    [
        ("metric", "metric"),
        ("metrics", "metric"),
        ("param", "param"),
        ("params", "param"),
        ("parameter", "param"),
        ("parameters", "param"),
        ("tag", "tag"),
        ("tags", "tag"),
        ("attribute", "attribute"),
        ("attributes", "attribute"),
        ("attr", "attribute"),
        ("run", "attribute"),
        ("dataset", "dataset"),
        ("datasets", "dataset"),
        ("METRICS", "metric"),
        ("Tags", "tag"),
    ],
)
def test_run_entity_aliases(prefix: str, entity: str) -> None:
    key, value = {
        "metric": ("m", 1),
        "param": ("p", "v"),
        "tag": ("t", "v"),
        "attribute": ("status", "v"),
        "dataset": ("name", "v"),
    }[entity]
    literal = repr(value) if isinstance(value, str) else str(value)
    assert parse_filter(f"{prefix}.{key} = {literal}") == cmp(entity, key, "=", value)


@pytest.mark.parametrize(
    ("identifier", "key"),
    [
        ("run_name", "run_name"),
        ("`Run name`", "run_name"),
        ("`run name`", "run_name"),
        ("attributes.`Run name`", "run_name"),
        ("created", "start_time"),
        ("Created", "start_time"),
        ("attributes.created", "start_time"),
        ("run_id", "run_id"),
        ("status", "status"),
        ("user_id", "user_id"),
        ("artifact_uri", "artifact_uri"),
        ("start_time", "start_time"),
        ("end_time", "end_time"),
    ],
)
def test_attribute_keys_and_aliases(identifier: str, key: str) -> None:
    value: object = 5 if key.endswith("_time") else "x"
    literal = "5" if key.endswith("_time") else "'x'"
    assert parse_filter(f"{identifier} = {literal}") == cmp("attribute", key, "=", value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("tags.mlflow.runName = 'x'", "mlflow.runName"),
        ("tags.`mlflow.runName` = 'x'", "mlflow.runName"),
        ("tags.\"mlflow.runName\" = 'x'", "mlflow.runName"),
        ("tags.`my key` = 'x'", "my key"),
        ("tags.\"my key\" = 'x'", "my key"),
        ("tags.`a``b` = 'x'", "a`b"),
        ('tags."a""b" = \'x\'', 'a"b'),
        ("tags.`a-b/c` = 'x'", "a-b/c"),
        ("tags.`ü` = 'x'", "ü"),
        ("tags.k_1 = 'x'", "k_1"),
        ("tags.1st = 'x'", "1st"),
    ],
)
def test_key_quoting(text: str, key: str) -> None:
    assert parse_filter(text) == cmp("tag", key, "=", "x")


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("''", ""),
        ("'it''s'", "it's"),
        ("'it\\'s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\\\\b'", "a\\b"),
        ("'10\\%'", "10\\%"),  # unknown escapes stay, for LIKE
        ("'a\"b'", 'a"b'),
        ("'AND OR'", "AND OR"),
        ("'  spaced  '", "  spaced  "),
    ],
)
def test_string_values(literal: str, value: str) -> None:
    assert parse_filter(f"params.p = {literal}") == cmp("param", "p", "=", value)


@pytest.mark.parametrize(
    ("literal", "value", "kind"),
    [
        ("1", 1, int),
        ("-1", -1, int),
        ("+7", 7, int),
        ("0", 0, int),
        ("9007199254740993", 2**53 + 1, int),
        ("1.5", 1.5, float),
        ("-0.25", -0.25, float),
        (".5", 0.5, float),
        ("5.", 5.0, float),
        ("1e3", 1000.0, float),
        ("1E-3", 0.001, float),
        ("-2.5e+2", -250.0, float),
    ],
)
def test_number_values(literal: str, value: float, kind: type) -> None:
    parsed = parse_filter(f"metrics.m >= {literal}")
    assert parsed == cmp("metric", "m", ">=", value)
    assert isinstance(parsed, Comparison)
    assert type(parsed.value) is kind


def test_large_integer_timestamps_stay_exact() -> None:
    parsed = parse_filter("start_time = 9007199254740993")
    assert isinstance(parsed, Comparison)
    assert parsed.value == 2**53 + 1
    assert parsed.value != float(2**53 + 1)


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("metrics.m = 1", "="),
        ("metrics.m != 1", "!="),
        ("metrics.m <> 1", "!="),
        ("metrics.m < 1", "<"),
        ("metrics.m <= 1", "<="),
        ("metrics.m > 1", ">"),
        ("metrics.m >= 1", ">="),
        ("metrics.m>=1", ">="),
        ("metrics.m>-1", ">"),
    ],
)
def test_numeric_comparators(text: str, op: str) -> None:
    parsed = parse_filter(text)
    assert isinstance(parsed, Comparison)
    assert parsed.op == op


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.p LIKE 'a%'", cmp("param", "p", "LIKE", "a%")),
        ("params.p like 'a%'", cmp("param", "p", "LIKE", "a%")),
        ("params.p ILIKE 'a%'", cmp("param", "p", "ILIKE", "a%")),
        ("params.p iLike 'a%'", cmp("param", "p", "ILIKE", "a%")),
        ("params.p IS NULL", cmp("param", "p", "IS NULL", None)),
        ("params.p is null", cmp("param", "p", "IS NULL", None)),
        ("tags.t IS NOT NULL", cmp("tag", "t", "IS NOT NULL", None)),
        ("run_id IN ('a')", cmp("attribute", "run_id", "IN", ("a",))),
        ("run_id in ('a', \"b\")", cmp("attribute", "run_id", "IN", ("a", "b"))),
        ("run_id NOT IN ('a','b')", cmp("attribute", "run_id", "NOT IN", ("a", "b"))),
        ("run_id not  in ( 'a' )", cmp("attribute", "run_id", "NOT IN", ("a",))),
        ("datasets.name IN ('x', 'y')", cmp("dataset", "name", "IN", ("x", "y"))),
        ("datasets.context NOT IN ('x')", cmp("dataset", "context", "NOT IN", ("x",))),
        ("datasets.digest LIKE 'f9%'", cmp("dataset", "digest", "LIKE", "f9%")),
    ],
)
def test_keyword_comparators(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


# -- boolean structure ------------------------------------------------------------

A = cmp("metric", "a", ">", 1)
B = cmp("param", "b", "=", "x")
C = cmp("tag", "c", "!=", "y")
D = cmp("attribute", "status", "=", "FINISHED")
TEXT = {
    "a": "metrics.a > 1",
    "b": "params.b = 'x'",
    "c": "tags.c != 'y'",
    "d": "status = 'FINISHED'",
}


def t(template: str) -> str:
    return template.format(**TEXT)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{a} AND {b}", And((A, B))),
        ("{a} and {b} AnD {c}", And((A, B, C))),
        ("{a} OR {b}", Or((A, B))),
        ("{a} OR {b} AND {c}", Or((A, And((B, C))))),
        ("{a} AND {b} OR {c}", Or((And((A, B)), C))),
        ("{a} AND {b} OR {c} AND {d}", Or((And((A, B)), And((C, D))))),
        ("({a} OR {b}) AND {c}", And((Or((A, B)), C))),
        ("{a} AND ({b} OR {c})", And((A, Or((B, C))))),
        ("(({a}))", A),
        ("({a} AND {b}) AND {c}", And((And((A, B)), C))),
        ("({a} OR ({b} OR {c}))", Or((A, Or((B, C))))),
        ("({a})OR({b})", Or((A, B))),
    ],
)
def test_precedence_and_parentheses(template: str, expected: Expr) -> None:
    assert parse_filter(t(template)) == expected


def test_keywords_inside_values_and_keys_are_not_keywords() -> None:
    assert parse_filter("tags.and = 'or' OR tags.`OR` = 'and'") == Or(
        (cmp("tag", "and", "=", "or"), cmp("tag", "OR", "=", "and"))
    )


# -- syntax errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("metrics.acc > > 1", 14, "unexpected '>' at position 14; expected a value"),
        ("metrics.acc >", 13, "unexpected end of input at position 13; expected a value"),
        ("metrics.acc 1", 12, "unexpected '1' at position 12; expected a comparator"),
        ("metrics.acc > 1 AND", 19, "unexpected end of input at position 19"),
        ("metrics.acc > 1 metrics.b > 2", 16, "unexpected 'metrics.b' at position 16"),
        ("AND metrics.acc > 1", 0, "unexpected 'AND' at position 0; expected an identifier"),
        ("(metrics.a > 1", 14, "expected ')' to close the '(' at position 0"),
        ("metrics.a > 1)", 13, "unexpected ')' at position 13"),
        ("()", 1, "unexpected ')' at position 1"),
        ("params.p = 'abc", 11, "unterminated string starting at position 11"),
        ("tags.`abc = 'x'", 5, "unterminated identifier starting at position 5"),
        ("params.p ! 'x'", 9, "unexpected character '!' at position 9"),
        ("params.p == 'x'", 10, "unexpected '=' at position 10"),
        ("params.p NOT LIKE 'x'", 13, "unexpected 'LIKE' at position 13; expected IN"),
        ("params.p IS 'x'", 12, "unexpected \"'x'\" at position 12; expected NULL"),
        ("params.p IS NOT 'x'", 16, "expected NULL"),
        ("run_id IN 'a'", 10, "expected '(' to start a list"),
        ("run_id IN ()", 11, "unexpected ')' at position 11; expected a value"),
        ("run_id IN ('a' 'b')", 15, "expected ',' or ')'"),
        ("run_id IN ('a',)", 15, "unexpected ')' at position 15"),
        ("metrics.a > 1abc", 12, "invalid number '1abc' at position 12"),
        ("metrics.a > 1.2.3", 12, "invalid number"),
        ("metrics.a > 1e999", 12, "out of range"),
        ("metrics.a > - 1", 12, "unexpected character '-' at position 12"),
        ("tags. = 'x'", 0, "missing key after 'tags.' at position 0"),
        ("tags.'x' = 'x'", 0, "missing key after 'tags.'"),
        ("NOT metrics.a > 1", 0, "unexpected 'NOT' at position 0"),
        ("metrics.a > 1 OR OR metrics.b > 1", 17, "unexpected 'OR' at position 17"),
        ("'x' = params.p", 0, "expected an identifier"),
        ("params.p = 'x' ;", 15, "unexpected character ';' at position 15"),
        ("tags.a-b = 'x'", 6, "unexpected character '-' at position 6; back-quote keys"),
    ],
)
def test_syntax_errors_name_position_and_token(text: str, position: int, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    error = info.value
    assert error.position == position
    assert error.text == text
    assert fragment in error.message
    assert f'"{text}"' in error.message  # the whole filter is quoted back
    assert error.error_code == "INVALID_PARAMETER_VALUE"


# -- semantic errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("foo.x = 1", ["unknown entity 'foo'", "metrics, params, tags, attributes, datasets"]),
        ("metrics.acc > '0.5'", ["expected a numeric value", "metric 'acc'"]),
        ("metrics.acc IS NULL", ["invalid comparator 'IS NULL'", "=, !=, <, <=, >, >="]),
        ("metrics.acc LIKE 'x'", ["invalid comparator 'LIKE'"]),
        ("params.p > 'a'", ["invalid comparator '>'", "LIKE, ILIKE, IS NULL"]),
        ("params.p = 1", ["expected a quoted string value", "param 'p'"]),
        ("params.p IN ('a')", ["invalid comparator 'IN'"]),
        ("tags.t LIKE 5", ["expected a quoted string value"]),
        ("status IN ('a')", ["invalid comparator 'IN'", "attribute 'status'"]),
        ("run_id IN ('a', 1)", ["expected a list of quoted strings"]),
        ("start_time > '0'", ["expected a numeric value", "attribute 'start_time'"]),
        ("created LIKE '1%'", ["invalid comparator 'LIKE'"]),
        ("status IS NULL", ["invalid comparator 'IS NULL'"]),
        ("lifecycle_stage = 'active'", ["lifecycle_stage", "view type"]),
        ("experiment_id = '1'", ["experiment_id", "experiment ids"]),
        ("acc > 1", ["invalid attribute key 'acc'", "run_name, start_time"]),
        ("attributes.name = 'x'", ["invalid attribute key 'name'"]),
        ("datasets.source = 'x'", ["invalid dataset key 'source'", "context, digest, name"]),
        ("datasets.name > 'x'", ["invalid comparator '>'"]),
        ("tags.`` = 'x'", ["empty key"]),
    ],
)
def test_semantic_errors(text: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_filter(text)
    for fragment in fragments:
        assert fragment in info.value.message
    assert f'"{text}"' in info.value.message


def test_like_pattern_ending_in_lone_escape_is_rejected() -> None:
    with pytest.raises(InvalidParameter, match="unescaped backslash"):
        parse_filter('params.p LIKE "a\\\\"')  # a pattern of a + one backslash
    # An escaped backslash at the end is fine.
    assert parse_filter("params.p LIKE 'a\\\\\\\\'") == cmp("param", "p", "LIKE", "a\\\\")


def test_semantic_errors_are_not_syntax_errors() -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_filter("metrics.acc > '1'")
    assert not isinstance(info.value, FilterSyntaxError)


# -- experiments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'x'", cmp("attribute", "name", "=", "x")),
        ("attributes.name ILIKE 'x%'", cmp("attribute", "name", "ILIKE", "x%")),
        ("attr.name != 'x'", cmp("attribute", "name", "!=", "x")),
        ("experiment_id = '3'", cmp("attribute", "experiment_id", "=", "3")),
        ("experiment_id IN ('1', '2')", cmp("attribute", "experiment_id", "IN", ("1", "2"))),
        ("experiment_id NOT IN ('1')", cmp("attribute", "experiment_id", "NOT IN", ("1",))),
        ("creation_time > 5", cmp("attribute", "creation_time", ">", 5)),
        ("last_update_time <= 5.5", cmp("attribute", "last_update_time", "<=", 5.5)),
        ("tags.k IS NULL", cmp("tag", "k", "IS NULL", None)),
        ("tag.`a b` LIKE '%'", cmp("tag", "a b", "LIKE", "%")),
    ],
)
def test_experiment_filters(text: str, expected: Comparison) -> None:
    assert parse_filter(text, kind="experiments") == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metrics.m > 1", "valid entities for experiments are attributes, tags"),
        ("params.p = 'x'", "unknown entity 'params'"),
        ("run_name = 'x'", "invalid attribute key 'run_name'"),
        ("experiment_id = 3", "expected a quoted string value"),
        ("experiment_id LIKE '3'", "invalid comparator 'LIKE'"),
        ("name IN ('a')", "invalid comparator 'IN'"),
        ("creation_time = 'x'", "expected a numeric value"),
        ("lifecycle_stage = 'deleted'", "view type"),
    ],
)
def test_experiment_filter_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_filter(text, kind="experiments")
    assert fragment in info.value.message


# -- tokenizer and formatter ----------------------------------------------------------------


def test_tokenizer_positions() -> None:
    tokens = tokenize("tags.`a b`  <> 'x'")
    assert [(tok.kind, tok.pos) for tok in tokens] == [
        ("ident", 0),
        ("op", 12),
        ("string", 15),
        ("end", 18),
    ]
    assert tokens[1].value == "!="


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("metric.m > 1", "metrics.m > 1"),
        ("metric.m > 1.0", "metrics.m > 1.0"),
        ("metric.m > 1e-5", "metrics.m > 1e-05"),
        ("param.p <> 'x'", "params.p != 'x'"),
        ("tag.`a b` like 'x'", "tags.`a b` LIKE 'x'"),
        ('tags."mlflow.runName" = "it\'s"', "tags.mlflow.runName = 'it''s'"),
        ("`Run name` = 'x'", "attributes.run_name = 'x'"),
        ("created >= 0", "attributes.start_time >= 0"),
        ("run_id in ('a','b')", "attributes.run_id IN ('a', 'b')"),
        ("tags.t is not null", "tags.t IS NOT NULL"),
        ("params.p = 'a\\\\b'", "params.p = 'a\\\\b'"),
        (t("({a} or {b}) and {c}"), t("({a} OR {b}) AND {c}")),
        (t("{a} or {b} and {c}"), t("{a} OR {b} AND {c}")),
        (t("({a} and {b}) and {c}"), t("({a} AND {b}) AND {c}")),
        (t("({a} or {b}) or {c}"), t("({a} OR {b}) OR {c}")),
    ],
)
def test_format_filter(text: str, canonical: str) -> None:
    parsed = parse_filter(text)
    assert parsed is not None
    assert format_filter(parsed) == canonical
    assert parse_filter(canonical) == parsed


# -- round trip (property) --------------------------------------------------------------------

keys = st.one_of(
    st.sampled_from(["acc", "mlflow.runName", "a b", "a`b", 'a"b', "and", "x.y.z", "1", "é"]),
    st.text(min_size=1, max_size=12),
)
strings = st.text(max_size=12)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _ends_with_lone_backslash(text: str) -> bool:
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    """Any comparison that RUNS accepts, drawn from the rule table itself."""
    entity = draw(st.sampled_from(["metric", "param", "tag", "attribute", "dataset"]))
    rule: FieldRule
    if entity in RUNS.keyed:
        key = draw(keys)
        rule = RUNS.keyed[entity]
    else:
        key = draw(st.sampled_from(sorted(RUNS.fixed[entity])))
        rule = RUNS.fixed[entity][key]
    op = draw(st.sampled_from(sorted(rule.ops)))
    value: object
    if op in NULL_OPS:
        value = None
    elif op in LIST_OPS:
        value = tuple(draw(st.lists(strings, min_size=1, max_size=3)))
    elif rule.value_type == "number":
        value = draw(numbers)
    elif op in PATTERN_OPS:
        value = draw(strings.filter(lambda s: not _ends_with_lone_backslash(s)))
    else:
        value = draw(strings)
    return cmp(entity, key, op, value)


expressions = st.recursive(
    comparisons(),
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(expressions)
def test_format_then_parse_is_identity(expr: Expr) -> None:
    text = format_filter(expr)
    assert parse_filter(text) == expr


filter_fragments = st.sampled_from(
    [
        "metrics.m",
        "params.p",
        "tags.`t`",
        "run_id",
        "(",
        ")",
        "AND",
        "OR",
        "NOT",
        "IN",
        "IS",
        "NULL",
        "LIKE",
        "=",
        "!=",
        "<>",
        ">",
        "'x'",
        '"y"',
        "1",
        "-2.5e3",
        ",",
        "`",
        "'",
        ".",
        "\\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(filter_fragments, max_size=12).map(" ".join)))
def test_arbitrary_text_parses_or_raises_invalid_parameter(text: str) -> None:
    """No input crashes the parser with anything but Keel's own error."""
    with contextlib.suppress(InvalidParameter):
        parse_filter(text)


@settings(max_examples=200, deadline=None)
@given(expressions)
def test_experiment_kind_rejects_run_only_entities(expr: Expr) -> None:
    def entities(e: Expr) -> set[str]:
        if isinstance(e, Comparison):
            return {e.entity}
        return set().union(*(entities(c) for c in e.clauses))

    text = format_filter(expr)
    if entities(expr) & {"metric", "param", "dataset"}:
        with pytest.raises(InvalidParameter):
            parse_filter(text, kind="experiments")
