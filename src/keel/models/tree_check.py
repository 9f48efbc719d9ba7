"""Bounds checks on scikit-learn tree structures, after unpickling and before any predict.

A pickled ``sklearn.tree._tree.Tree`` carries raw node arrays (children,
feature indices) that scikit-learn's compiled predict code follows without
bounds checks. A crafted file can point them outside the arrays: unpickling
succeeds, and the first predict crashes the process or reads memory it should
not. The allow-list admits the Tree class (every tree model needs it), so its
contents are checked here, before the golden sample is predicted.

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
_MAX_DEPTH = 12  # estimators nest a few levels (search CV -> pipeline -> ensemble -> tree)


def _trees(obj: Any, depth: int = 0, seen: set[int] | None = None) -> Iterator[Any]:
    """Every sklearn Tree reachable through attributes, lists, dicts and object arrays."""
    seen = set() if seen is None else seen
    if depth > _MAX_DEPTH or id(obj) in seen:
        return
    seen.add(id(obj))
    kind = type(obj)
    if kind.__name__ == "Tree" and kind.__module__ == "sklearn.tree._tree":
        yield obj
        return
    if isinstance(obj, (list, tuple)):
        children: list[Any] = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif kind.__module__ == "numpy" and getattr(obj, "dtype", None) is not None:
        children = list(obj.ravel()) if obj.dtype == object else []
    elif kind.__module__.startswith("sklearn"):
        children = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    else:
        children = []
    for child in children:
        yield from _trees(child, depth + 1, seen)


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


def tree_problems(model: Any) -> list[str]:
    """One line per tree whose node arrays would make predict read out of bounds."""
    out = []
    for i, tree in enumerate(_trees(model)):
        for problem in _one_tree(tree):
            out.append(f"tree {i}: {problem}")
    return out
