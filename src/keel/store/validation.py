"""Checks on keys, values and batch sizes, shared by every store and the server.

Over-long values are rejected, not truncated: silently cutting a param would
make two different configurations look identical (docs/decisions/0003-long-values.md).

>>> validate_key("metric", "val/loss")
>>> validate_key("metric", "../etc")
Traceback (most recent call last):
...
keel.errors.InvalidParameter: Invalid metric name '../etc': ...
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Sequence

from keel.entities import ExperimentTag, Metric, Param, RunTag
from keel.errors import InvalidParameter
from keel.store import base

_KEY_RE = re.compile(r"^[\w\-. /:]+$")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def validate_key(kind: str, key: object) -> None:
    """Keys are ≤ 250 chars of letters, digits, ``_ - . / : space`` and never a path escape."""
    if not isinstance(key, str) or not key:
        raise InvalidParameter(f"Invalid {kind} name {key!r}: it must be a non-empty string.")
    if len(key) > base.MAX_KEY_LENGTH:
        raise InvalidParameter(
            f"Invalid {kind} name {key[:40]!r}… ({len(key)} characters): "
            f"the limit is {base.MAX_KEY_LENGTH}. Use a shorter name."
        )
    if not _KEY_RE.match(key):
        raise InvalidParameter(
            f"Invalid {kind} name {key!r}: names may only contain letters, digits, "
            "underscores, dashes, periods, spaces, colons and slashes."
        )
    if key.startswith("/") or posixpath.normpath(key) != key.rstrip("/") or ".." in key.split("/"):
        raise InvalidParameter(
            f"Invalid {kind} name {key!r}: it must be a relative path without '.', '..' "
            "or repeated slashes."
        )


def _validate_value(kind: str, key: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise InvalidParameter(f"Invalid {kind} {key!r}: value {value!r} is not a string.")
    if len(value) > limit:
        raise InvalidParameter(
            f"{kind.capitalize()} {key!r} has a value of {len(value)} characters; the limit is "
            f"{limit}. Log long text as an artifact instead (keel.log_text / keel.log_dict)."
        )


def validate_int64(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"Invalid {name} {value!r}: it must be an integer.")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidParameter(f"Invalid {name} {value}: it must fit in a signed 64-bit integer.")


def validate_metric(metric: Metric) -> None:
    validate_key("metric", metric.key)
    value = metric.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(
            f"Invalid value {value!r} for metric {metric.key!r}: metrics must be numbers. "
            "Log text as a tag or param instead."
        )
    if isinstance(value, int) and not math.isfinite(float(value)):
        raise InvalidParameter(f"Metric {metric.key!r} value {value} does not fit a float.")
    validate_int64(f"timestamp for metric {metric.key!r}", metric.timestamp)
    validate_int64(f"step for metric {metric.key!r}", metric.step)


def validate_param(param: Param) -> None:
    validate_key("param", param.key)
    _validate_value("param", param.key, param.value, base.MAX_PARAM_VALUE_LENGTH)


def validate_tag(tag: RunTag | ExperimentTag, limit: int = base.MAX_TAG_VALUE_LENGTH) -> None:
    validate_key("tag", tag.key)
    _validate_value("tag", tag.key, tag.value, limit)


def validate_batch(
    metrics: Sequence[Metric], params: Sequence[Param], tags: Sequence[RunTag]
) -> None:
    """Batch limits first (cheap), then every entity; raises on the first problem."""
    for kind, items, limit in (
        ("metrics", metrics, base.MAX_METRICS_PER_BATCH),
        ("params", params, base.MAX_PARAMS_PER_BATCH),
        ("tags", tags, base.MAX_TAGS_PER_BATCH),
    ):
        if len(items) > limit:
            raise InvalidParameter(
                f"A batch can contain at most {limit} {kind}; got {len(items)}. "
                "Split it into several log_batch calls (keel.Client.log_batch splits for you)."
            )
    total = len(metrics) + len(params) + len(tags)
    if total > base.MAX_ENTITIES_PER_BATCH:
        raise InvalidParameter(
            f"A batch can contain at most {base.MAX_ENTITIES_PER_BATCH} metrics, params and "
            f"tags in total; got {total}."
        )
    for m in metrics:
        validate_metric(m)
    for p in params:
        validate_param(p)
    seen: dict[str, str] = {}
    for p in params:
        if seen.setdefault(p.key, p.value) != p.value:
            raise InvalidParameter(
                f"The batch logs param {p.key!r} twice with different values "
                f"({seen[p.key]!r} and {p.value!r}); params are immutable."
            )
    for t in tags:
        validate_tag(t)


def validate_experiment_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter(f"Invalid experiment name {name!r}: it must be a non-empty string.")
    if len(name) > base.MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidParameter(
            f"Experiment name of {len(name)} characters is too long; the limit is "
            f"{base.MAX_EXPERIMENT_NAME_LENGTH}."
        )


def validate_run_name(name: object) -> None:
    if not isinstance(name, str):
        raise InvalidParameter(f"Invalid run name {name!r}: it must be a string.")
    if len(name) > base.MAX_RUN_NAME_LENGTH:
        raise InvalidParameter(
            f"Run name of {len(name)} characters is too long; the limit is "
            f"{base.MAX_RUN_NAME_LENGTH}."
        )


def validate_max_results(value: object, limit: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameter(f"Invalid max_results {value!r}: it must be a positive integer.")
    if value > limit:
        raise InvalidParameter(
            f"max_results {value} for {what} is above the limit of {limit}. "
            "Ask for fewer and follow next_page_token."
        )
    return value
