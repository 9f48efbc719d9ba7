"""Checks on registry names, versions, aliases, stages and tags, shared by every backend.

The rules are MLflow's (``mlflow/utils/validation.py`` of MLflow 3.17:
``_validate_model_name``, ``_validate_model_version``,
``_validate_model_alias_name`` and ``_validate_model_alias_name_reserved``),
so a name or alias accepted by one is accepted by the other; the messages say
what to change.

>>> validate_model_name("churn")
'churn'
>>> parse_version("3")
3
>>> validate_alias("v3")
Traceback (most recent call last):
...
keel.errors.InvalidParameter: Invalid alias 'v3': aliases shaped like a version (v1, V2, ...) ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from keel.entities import ModelStage
from keel.errors import InvalidParameter
from keel.store import registry, validation

# Versions live in 32-bit INTEGER columns (PostgreSQL); no model gets near this.
MAX_VERSION = 2**31 - 1
RESERVED_ALIAS = "latest"
_ALIAS_RE = re.compile(r"[\w\-]+", re.ASCII)
_VERSION_LIKE_ALIAS_RE = re.compile(r"[vV]\d+")


def validate_model_name(name: object, what: str = "registered model name") -> str:
    """A name must be usable in ``models:/<name>/<version>`` and ``models:/<name>@<alias>``.

    >>> validate_model_name("team/churn")
    Traceback (most recent call last):
    ...
    keel.errors.InvalidParameter: Invalid registered model name 'team/churn': names cannot ...
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter(f"Invalid {what} {name!r}: it must be a non-empty string.")
    if len(name) > registry.MAX_REGISTERED_MODEL_NAME_LENGTH:
        raise InvalidParameter(
            f"Invalid {what} {name[:40]!r}… ({len(name)} characters): the limit is "
            f"{registry.MAX_REGISTERED_MODEL_NAME_LENGTH}. Use a shorter name."
        )
    if "/" in name or ":" in name:
        suggestion = name.replace("/", "-").replace(":", "-")
        raise InvalidParameter(
            f"Invalid {what} {name!r}: names cannot contain '/' or ':', which would break "
            f"models:/ URIs. Use '-' or '.' instead, e.g. {suggestion!r}."
        )
    # MLflow's path_not_unique(): without '/', only these resolve to another path.
    if name == "." or name.startswith(".."):
        raise InvalidParameter(
            f"Invalid {what} {name!r}: a name cannot be '.' or start with '..', because "
            "names are also used as paths."
        )
    return name


def parse_version(version: object) -> int:
    """A version number from an ``int`` or a decimal string, as the wire sends it.

    >>> parse_version(7), parse_version(" 12 ")
    (7, 12)
    >>> parse_version("1.0")
    Traceback (most recent call last):
    ...
    keel.errors.InvalidParameter: Invalid model version '1.0': it must be a positive integer ...
    """
    number: int | None = None
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    elif isinstance(version, str) and version.strip().isascii() and version.strip().isdigit():
        number = int(version.strip())
    if number is None or number < 1:
        raise InvalidParameter(
            f"Invalid model version {version!r}: it must be a positive integer such as 3."
        )
    if number > MAX_VERSION:
        raise InvalidParameter(
            f"Invalid model version {version!r}: it is above the largest version number, "
            f"{MAX_VERSION}."
        )
    return number


def validate_alias(alias: object, *, for_setting: bool = True) -> str:
    """Aliases are ``[A-Za-z0-9_-]``, at most 255 characters, not ``latest`` nor ``v<digits>``.

    The reserved forms are refused only when setting an alias (``for_setting``);
    reading ``latest`` is allowed, and means the newest version.

    >>> validate_alias("champion")
    'champion'
    >>> validate_alias("Latest")
    Traceback (most recent call last):
    ...
    keel.errors.InvalidParameter: Invalid alias 'Latest': 'latest' (in any case) is reserved; ...
    """
    if not isinstance(alias, str) or not alias:
        raise InvalidParameter(f"Invalid alias {alias!r}: it must be a non-empty string.")
    if len(alias) > registry.MAX_ALIAS_LENGTH:
        raise InvalidParameter(
            f"Invalid alias {alias[:40]!r}… ({len(alias)} characters): the limit is "
            f"{registry.MAX_ALIAS_LENGTH}."
        )
    if not _ALIAS_RE.fullmatch(alias):
        raise InvalidParameter(
            f"Invalid alias {alias!r}: aliases may only contain letters, digits, "
            "underscores (_) and dashes (-)."
        )
    if for_setting and alias.lower() == RESERVED_ALIAS:
        raise InvalidParameter(
            f"Invalid alias {alias!r}: 'latest' (in any case) is reserved; "
            "models:/name@latest always means the newest version."
        )
    if for_setting and _VERSION_LIKE_ALIAS_RE.fullmatch(alias):
        raise InvalidParameter(
            f"Invalid alias {alias!r}: aliases shaped like a version (v1, V2, ...) are "
            f"reserved for versions, so models:/name@{alias} stays unambiguous. Pick another "
            f"name, e.g. 'release-{alias[1:]}'."
        )
    return alias


def parse_stage(stage: ModelStage | str) -> ModelStage:
    """A stage from its name in any case (``production``); InvalidParameter lists the stages.

    >>> parse_stage("staging")
    <ModelStage.STAGING: 'Staging'>
    """
    if isinstance(stage, ModelStage):
        return stage
    try:
        return ModelStage.parse(stage)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None


def validate_tag(key: object, value: object, owner: str = "registered model") -> None:
    """Tag keys follow the run tag rules (≤ 250 characters); values are strings ≤ 100,000.

    >>> validate_tag("team", "x" * 100_001)
    Traceback (most recent call last):
    ...
    keel.errors.InvalidParameter: Registered model tag 'team' has a value of 100001 characters; ...
    """
    validation.validate_key(f"{owner} tag", key)
    assert isinstance(key, str)
    if not isinstance(value, str):
        raise InvalidParameter(
            f"Invalid {owner} tag {key!r}: value {value!r} is not a string. Convert it with "
            "str() first."
        )
    if len(value) > registry.MAX_REGISTRY_TAG_VALUE_LENGTH:
        raise InvalidParameter(
            f"{owner.capitalize()} tag {key!r} has a value of {len(value)} characters; the limit "
            f"is {registry.MAX_REGISTRY_TAG_VALUE_LENGTH}. Store long text as an artifact of "
            "the run instead."
        )


def validate_tags(
    tags: Mapping[str, str] | None, owner: str = "registered model"
) -> dict[str, str]:
    """Check every tag of a mapping and return it as a plain dict (empty for None)."""
    checked = dict(tags or {})
    for key, value in checked.items():
        validate_tag(key, value, owner)
    return checked
