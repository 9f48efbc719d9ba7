"""Promotion gates: what a model version must pass before an alias may point at it.

A registered model declares gates per alias (``production``, ``champion``...).
Each gate is written as one line of text:

- a condition on the version's run, in the search grammar:
  ``metrics.f1 >= 0.85``, ``params.model = 'forest' OR params.model = 'gbm'``,
  ``tags.reviewed = 'yes'``;
- ``signature``: the package declares its input signature;
- ``loads``: the package passes integrity, safety and environment checks here
  and carries a golden sample (``keel models doctor``, nothing unpickled);
- ``verify <requirements.txt> [--python X.Y]``: loading in an environment
  built from those pins reproduces the golden sample (``keel models verify``);
  the pins are read when the gate is declared and stored with it, so the gate
  means the same on every machine.

Gates are stored as a tag of the registered model (``keel.gates.<alias>``,
JSON), so they travel with it through the REST API.

>>> [g.text for g in parse_gates(["metrics.f1 >= 0.85", "signature"])]
['metrics.f1 >= 0.85', 'signature']
>>> parse_gate("metrics.f1 >= 0.85").kind
'run'
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import InvalidParameter, InvalidState
from keel.search.filter import parse_filter

GATES_TAG_PREFIX = "keel.gates."
KINDS = ("run", "signature", "loads", "verify")
_RUN_PREFIXES = ("metrics.", "metric.", "params.", "param.", "tags.", "tag.", "attributes.")


@dataclass(frozen=True)
class Gate:
    """One declared gate. ``pins``/``python`` belong to ``verify`` gates only."""

    kind: str
    text: str
    pins: dict[str, str] = field(default_factory=dict)
    python: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.kind == "verify":
            out |= {"pins": self.pins, "python": self.python}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gate:
        kind = data.get("kind")
        if kind not in KINDS:
            raise InvalidParameter(f"Unknown gate kind {kind!r}; known kinds: {', '.join(KINDS)}.")
        return cls(
            kind=str(kind),
            text=str(data.get("text", "")),
            pins={str(k): str(v) for k, v in (data.get("pins") or {}).items()},
            python=data.get("python"),
        )


@dataclass(frozen=True)
class GateResult:
    """How one gate went: ``observed`` is what was measured, ``detail`` why it passed or not."""

    gate: str
    passed: bool
    observed: str = ""
    detail: str = ""


@dataclass(frozen=True)
class PromotionReport:
    """The gates' results for one version and alias; ``forced`` with the recorded reason."""

    name: str
    version: int
    alias: str
    results: tuple[GateResult, ...]
    forced_reason: str | None = None
    checked_at: int = 0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def status(self) -> str:
        if self.passed:
            return "passed"
        return "forced" if self.forced_reason else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "status": self.status,
            "forced_reason": self.forced_reason,
            "checked_at": self.checked_at,
            "results": [asdict(r) for r in self.results],
        }

    def summary(self) -> str:
        """One line per gate, for errors and the CLI."""
        lines = [f"Gates for {self.name} v{self.version} -> {self.alias}: {self.status}"]
        if not self.results:
            lines.append("  (no gates declared)")
        for r in self.results:
            mark = "pass" if r.passed else "FAIL"
            observed = f" (observed: {r.observed})" if r.observed else ""
            detail = f": {r.detail}" if r.detail else ""
            lines.append(f"  {mark}  {r.gate}{observed}{detail}")
        return "\n".join(lines)


class PromotionRefused(InvalidState):
    """A version failed a gate of the alias it was to get; ``report`` says which and why."""

    def __init__(self, report: PromotionReport) -> None:
        self.report = report
        failed = [r.gate for r in report.results if not r.passed]
        super().__init__(
            f"Not pointing alias {report.alias!r} of {report.name!r} at version "
            f"{report.version}: {len(failed)} of {len(report.results)} gate(s) failed.\n"
            f"{report.summary()}\nFix the version (or register a better one); to override, "
            "promote with a force reason, which is recorded on the version."
        )


def gates_tag(alias: str) -> str:
    """The registered-model tag holding the gates of ``alias``."""
    return f"{GATES_TAG_PREFIX}{alias}"


def parse_gate(text: str, *, base: Path | None = None) -> Gate:
    """One gate from its text; ``base`` resolves a relative ``verify`` requirements path."""
    stripped = " ".join(str(text).split())
    if not stripped:
        raise InvalidParameter("An empty gate: write a condition such as 'metrics.f1 >= 0.85'.")
    head = stripped.split(" ", 1)[0]
    if head in ("signature", "loads") and stripped == head:
        return Gate(head, head)
    if head == "verify":
        return _verify_gate(stripped, base)
    if stripped.startswith(_RUN_PREFIXES):
        parse_filter(stripped, "runs")  # the grammar's own error, with the position
        return Gate("run", stripped)
    raise InvalidParameter(
        f"Unknown gate {text!r}. Gates are a run condition ('metrics.f1 >= 0.85'), "
        "'signature', 'loads', or 'verify <requirements.txt> [--python X.Y]'."
    )


def _verify_gate(text: str, base: Path | None) -> Gate:
    from keel.models.targets import read_pins

    args = shlex.split(text)[1:]
    python = None
    if len(args) == 3 and args[1] == "--python":
        python = args[2]
    elif len(args) != 1:
        raise InvalidParameter(
            f"Invalid gate {text!r}: write 'verify <requirements.txt> [--python X.Y]'."
        )
    path = Path(args[0]).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise InvalidParameter(
            f"Invalid gate {text!r}: {path} is not a file. Give the requirements file of the "
            "target environment (e.g. the server's pip freeze)."
        )
    pins = read_pins(path)
    shown = f"verify {path.name}" + (f" --python {python}" if python else "")
    return Gate("verify", shown, pins=pins, python=python)


def parse_gates(texts: Iterable[str | Gate], *, base: Path | None = None) -> list[Gate]:
    """Gates from texts (or Gate values, kept as they are)."""
    if isinstance(texts, str):
        raise InvalidParameter(f"Gates must be a list of strings, not the string {texts!r}.")
    return [t if isinstance(t, Gate) else parse_gate(t, base=base) for t in texts]


def dump_gates(gates: Sequence[Gate]) -> str:
    return json.dumps([g.to_dict() for g in gates], sort_keys=True)


def load_gates(value: str | None) -> list[Gate]:
    """The gates stored in a ``keel.gates.<alias>`` tag value (none when unset)."""
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise InvalidState(f"The stored gates cannot be read as JSON: {exc}") from exc
    if not isinstance(data, list):
        raise InvalidState("The stored gates are not a list; declare them again.")
    return [Gate.from_dict(item) for item in data]
