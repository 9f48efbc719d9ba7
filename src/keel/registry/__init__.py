"""The model registry: registered models, versions, aliases, stages, gates and lineage.

Most users reach it through ``keel.Client`` (MLflow's method names) and
``keel.register_model``; ``models:/`` URIs work wherever a model URI does.

>>> import keel
>>> c = keel.Client("sqlite:///:memory:")
>>> _ = c.create_registered_model("churn")
>>> c.set_promotion_gates("churn", "production", ["metrics.f1 >= 0.85"])[0].kind
'run'
"""

from __future__ import annotations

from keel.registry.gates import Gate, GateResult, PromotionRefused, PromotionReport
from keel.registry.uris import ModelsUri, parse_models_uri

__all__ = [
    "Gate",
    "GateResult",
    "ModelsUri",
    "PromotionRefused",
    "PromotionReport",
    "parse_models_uri",
]
