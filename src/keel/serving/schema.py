"""What a served model expects: its input columns and types, from the package's signature.

MLflow's ``MLmodel`` signature is either a list of column specs
(``[{"name": "age", "type": "double"}, ...]``) or one tensor spec
(``{"dtype": "float64", "shape": [-1, 30]}``). A tensor's columns are named
``"0"``, ``"1"``, ... as the data profiles name a 2-D array's columns, so both
kinds are checked against the training profile the same way.

>>> s = InputSchema.from_signature('[{"type": "double", "name": "age", "required": true}]')
>>> s.columns, s.types, s.tensor
(['age'], ['double'], False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
INTEGER_TYPES = frozenset({"long", "integer"})


@dataclass(frozen=True)
class InputSchema:
    """The columns a model takes, their MLflow types, and whether it takes one tensor."""

    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    tensor: bool = False
    dtype: str = "float64"  # a tensor's element type

    @property
    def known(self) -> bool:
        """False when the package has no signature: inputs are then passed through."""
        return bool(self.columns)

    def to_dict(self) -> dict[str, Any]:
        if self.tensor:
            return {"tensor": {"dtype": self.dtype, "columns": len(self.columns)}}
        return {
            "columns": [
                {"name": n, "type": t} for n, t in zip(self.columns, self.types, strict=True)
            ]
        }

    @classmethod
    def from_signature(cls, inputs: str | None) -> InputSchema:
        """Read MLflow's ``signature.inputs`` JSON text."""
        if not inputs:
            return cls()
        specs = json.loads(inputs)
        if len(specs) == 1 and specs[0].get("type") == "tensor":
            spec = specs[0]["tensor-spec"]
            shape = spec.get("shape") or [-1]
            width = int(shape[1]) if len(shape) > 1 and int(shape[1]) > 0 else 1
            names = [str(i) for i in range(width)]
            return cls(
                names, ["double"] * width, tensor=True, dtype=str(spec.get("dtype", "float64"))
            )
        names = [str(s.get("name", i)) for i, s in enumerate(specs)]
        return cls(names, [str(s.get("type", "string")) for s in specs])

    @classmethod
    def of_package(cls, package: Path) -> InputSchema:
        """The schema in a package's (or MLflow model directory's) ``MLmodel`` file."""
        mlmodel = package / "MLmodel"
        if not mlmodel.is_file():
            return cls()
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
        return cls.from_signature((meta.get("signature") or {}).get("inputs"))
