"""Serving one model over HTTP with MLflow's scoring protocol: ``keel serve``.

>>> from keel.serving import ScoringApp, ServedModel                     # doctest: +SKIP
>>> served = ServedModel.load("models:/churn@champion")                   # doctest: +SKIP
>>> app = ScoringApp(served, validation="reject")  # an ASGI app          # doctest: +SKIP
"""

from __future__ import annotations

from keel.serving.app import ScoringApp, ServedModel

__all__ = ["ScoringApp", "ServedModel"]
