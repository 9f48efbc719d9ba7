"""``models:/`` URIs: which registered version a URI names.

MLflow's forms, all accepted wherever Keel takes a model URI:

- ``models:/<name>/<version>``: one version;
- ``models:/<name>@<alias>``: the version an alias points at;
- ``models:/<name>/<stage>``: the newest version in a stage (legacy);
- ``models:/<name>/latest``: the newest version of all.

>>> parse_models_uri("models:/churn@champion")
ModelsUri(name='churn', version=None, alias='champion', stage=None)
>>> parse_models_uri("models:/churn/3").version
3
>>> parse_models_uri("models:/churn/production").stage
<ModelStage.PRODUCTION: 'Production'>
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.entities import ModelStage
from keel.errors import InvalidParameter

SCHEME = "models:/"
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class ModelsUri:
    """The parts of a ``models:/`` URI; exactly one of version, alias, stage is set,
    or none of them for ``latest``."""

    name: str
    version: int | None = None
    alias: str | None = None
    stage: ModelStage | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{SCHEME}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        if self.stage is not None:
            return f"{SCHEME}{self.name}/{self.stage.value}"
        return f"{SCHEME}{self.name}/{LATEST}"


def is_models_uri(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_models_uri(text: str) -> ModelsUri:
    """Split a ``models:/`` URI; InvalidParameter with the accepted forms when it is not one."""
    if not is_models_uri(text):
        raise _invalid(text, "it does not start with models:/")
    body = text[len(SCHEME) :].strip("/")
    if "/" in body:
        name, _, ref = body.rpartition("/")
        if not name or not ref:
            raise _invalid(text, "the name or the version is empty")
        if ref.isdigit():
            if int(ref) < 1:
                raise _invalid(text, "versions start at 1")
            return ModelsUri(name, version=int(ref))
        if ref.lower() == LATEST:
            return ModelsUri(name)
        try:
            return ModelsUri(name, stage=ModelStage.parse(ref))
        except ValueError:
            raise _invalid(
                text, f"{ref!r} is neither a version number, a stage nor 'latest'"
            ) from None
    name, at, alias = body.rpartition("@")
    if at and name and alias:
        return ModelsUri(name, alias=alias)
    raise _invalid(text, "it names no version, alias or stage")


def _invalid(text: str, why: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid model URI {text!r}: {why}. Use models:/<name>/<version>, "
        "models:/<name>@<alias>, models:/<name>/<stage> or models:/<name>/latest."
    )
