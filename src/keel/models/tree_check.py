"""Bounds checks on scikit-learn tree structures, after unpickling and before any predict.

A pickled ``sklearn.tree._tree.Tree`` carries raw node arrays (children,
feature indices) that scikit-learn's compiled predict code follows without
bounds checks. A crafted file can point them outside the arrays: unpickling
succeeds, and the first predict crashes the process or reads memory it should
not. HistGradientBoosting's ``TreePredictor`` holds the same kind of node
array (``left``, ``right``, ``feature_idx``, ``bitset_idx``), also followed
without bounds checks. The allow-list admits both classes (every tree model
needs them; skops leaves both untrusted by default for exactly this reason),
so their contents are checked here, before the golden sample is predicted.

>>> import numpy as np
>>> from sklearn.ensemble import RandomForestClassifier
>>> x = np.random.default_rng(0).normal(size=(40, 3)); y = (x[:, 0] > 0).astype(int)
>>> tree_problems(RandomForestClassifier(n_estimators=3).fit(x, y))
[]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

LEAF = -1  # scikit-learn's TREE_LEAF
UNDEFINED_FEATURE = -2  # scikit-learn's TREE_UNDEFINED
# Estimators nest a few levels (search CV -> pipeline -> column transformer ->
# pipeline -> ensemble -> tree); anything deeper is refused, not skipped, so
# nesting cannot hide a tree from the check.
MAX_DEPTH = 100
_HIST_PACKAGE = "sklearn.ensemble._hist_gradient_boosting"
_NODE_FIELDS = ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx")
_BITSETS = ("raw_left_cat_bitsets", "binned_left_cat_bitsets")
_TOO_DEEP = object()


def _is_tree(kind: type) -> bool:
    return kind.__name__ == "Tree" and kind.__module__ == "sklearn.tree._tree"


def _is_predictor(kind: type) -> bool:
    return kind.__name__ == "TreePredictor" and kind.__module__ == f"{_HIST_PACKAGE}.predictor"


def _trees(
    obj: Any, depth: int = 0, seen: set[object] | None = None, owner: Any = None
) -> Iterator[tuple[Any, Any]]:
    """Every Tree and TreePredictor reachable through attributes, lists, dicts and
    object arrays, each with the HistGradientBoosting estimator holding it (None
    for a Tree, or for a predictor found outside such an estimator).
    """
    seen = set() if seen is None else seen
    kind = type(obj)
    # A predictor is checked against each estimator it sits in: placing it
    # somewhere else first must not make the walk skip it under its estimator.
    key: object = (id(obj), id(owner)) if _is_predictor(kind) else id(obj)
    if key in seen:
        return
    if depth > MAX_DEPTH:
        yield _TOO_DEEP, None
        return
    seen.add(key)
    if _is_tree(kind) or _is_predictor(kind):
        yield obj, owner
        return
    if isinstance(obj, (list, tuple)):
        children: list[Any] = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif kind.__module__ == "numpy" and getattr(obj, "dtype", None) is not None:
        children = list(obj.ravel()) if obj.dtype == object else []
    elif kind.__module__.startswith("sklearn"):
        children = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
        if kind.__module__.startswith(_HIST_PACKAGE) and hasattr(obj, "_predictors"):
            owner = obj  # the estimator whose predict feeds its predictors
    else:
        children = []
    for child in children:
        yield from _trees(child, depth + 1, seen, owner)


def _one_tree(tree: Any) -> list[str]:
    import numpy as np

    count, n_features = int(tree.node_count), int(tree.n_features)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if not len(left) == len(right) == len(feature) == count:
        return [f"node arrays of different lengths for {count} nodes"]
    leaf = left == LEAF
    if (leaf != (right == LEAF)).any():
        return ["a node with only one child"]
    split = np.flatnonzero(~leaf)
    lo, hi, f = left[split], right[split], feature[split]
    problems = []
    # A child must lie after its parent (scikit-learn builds them in that
    # order) and inside the arrays: predict's walk can neither loop nor escape.
    if not ((lo > split) & (lo < count)).all():
        problems.append(f"left child indices outside {count} nodes or pointing backwards")
    if not ((hi > split) & (hi < count)).all():
        problems.append(f"right child indices outside {count} nodes or pointing backwards")
    if not (((f >= 0) & (f < n_features)).all() and (feature[leaf] == UNDEFINED_FEATURE).all()):
        problems.append(f"feature indices outside 0..{n_features - 1}")
    return problems


def _one_predictor(predictor: Any, owner: Any) -> list[str]:
    """Problems in a HistGradientBoosting TreePredictor's node array.

    Features are bounded by the owning estimator's ``n_features_in_``, which
    its predict enforces on the input; a predictor outside an estimator can
    only be checked for its structure.
    """
    import numpy as np

    nodes = getattr(predictor, "nodes", None)
    fields = getattr(getattr(nodes, "dtype", None), "names", None) or ()
    if not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or not set(_NODE_FIELDS) <= set(fields):
        return ["its nodes are not a TreePredictor node record array"]
    count = len(nodes)
    if count == 0:
        return ["no nodes, but predict reads node 0"]
    split = np.flatnonzero(nodes["is_leaf"] == 0)
    lo = nodes["left"][split].astype(np.int64)
    hi = nodes["right"][split].astype(np.int64)
    feature = nodes["feature_idx"][split].astype(np.int64)
    problems = []
    # As for Tree: the grower numbers nodes depth first, so children come after
    # their parent; inside the array, predict's walk neither loops nor escapes.
    if not ((lo > split) & (lo < count)).all():
        problems.append(f"left child indices outside {count} nodes or pointing backwards")
    if not ((hi > split) & (hi < count)).all():
        problems.append(f"right child indices outside {count} nodes or pointing backwards")
    n_features = _count(getattr(owner, "n_features_in_", None))
    if (feature < 0).any() or (n_features is not None and (feature >= n_features).any()):
        bound = "?" if n_features is None else n_features - 1
        problems.append(f"feature indices outside 0..{bound}")
    categorical = split[nodes["is_categorical"][split] != 0]
    if len(categorical):
        problems.extend(_categorical_problems(predictor, nodes[categorical], owner))
    return problems


def _categorical_problems(predictor: Any, nodes: Any, owner: Any) -> list[str]:
    """Categorical splits index the bitset arrays and the owner's categorical features."""
    import numpy as np

    problems = []
    bitsets = min(len(getattr(predictor, name, ())) for name in _BITSETS)
    if (nodes["bitset_idx"].astype(np.int64) >= bitsets).any():
        problems.append(f"categorical bitset indices outside {bitsets} bitsets")
    flags = getattr(getattr(owner, "_bin_mapper", None), "is_categorical_", None)
    features = nodes["feature_idx"].astype(np.int64)
    known = np.zeros(0, dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
    # predict looks each such feature up among the known categories of the
    # categorical features; any other feature has no row there.
    if not ((features >= 0) & (features < len(known))).all() or not known[features].all():
        problems.append("categorical splits on features the model does not treat as categorical")
    return problems


def _count(value: object) -> int | None:
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


def tree_problems(model: Any) -> list[str]:
    """One line per tree whose node arrays would make predict read out of bounds.

    >>> tree_problems([[[0]] * 2] * 3)  # no trees, nothing wrong
    []
    """
    out = []
    counts = {"tree": 0, "hist tree": 0}
    for found, owner in _trees(model):
        if found is _TOO_DEEP:
            out.append(
                f"objects nested more than {MAX_DEPTH} levels deep, too deep to check for trees"
            )
            continue
        if _is_tree(type(found)):
            label, problems = "tree", _one_tree(found)
        else:
            label, problems = "hist tree", _one_predictor(found, owner)
        out.extend(f"{label} {counts[label]}: {problem}" for problem in problems)
        counts[label] += 1
    return out
