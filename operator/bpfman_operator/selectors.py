"""Kubernetes label selectors (metav1.LabelSelector): matchLabels and
matchExpressions with In, NotIn, Exists and DoesNotExist, ANDed together.

An empty selector (``{}``) matches everything; a missing one (None) nothing,
as `metav1.LabelSelectorAsSelector` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector the API server would not have produced (unknown operator,
    values where none are allowed, ...)."""


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether `labels` satisfy `selector`.

    Raises:
        SelectorError: the selector is malformed.
    """
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression(e, labels) for e in selector.get("matchExpressions") or [])


def _expression(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = expr.get("key"), expr.get("operator")
    values = expr.get("values") or []
    if not key:
        raise SelectorError("a matchExpressions entry needs a key")
    if op in ("In", "NotIn"):
        if not values:
            raise SelectorError(f"operator {op} on {key!r} needs values")
        present = key in labels and labels[key] in values
        return present if op == "In" else not present
    if op in ("Exists", "DoesNotExist"):
        if values:
            raise SelectorError(f"operator {op} on {key!r} takes no values")
        return (key in labels) == (op == "Exists")
    raise SelectorError(f"unknown selector operator {op!r} on {key!r}")


def to_query(selector: Mapping[str, Any]) -> str:
    """The selector as a ``labelSelector`` query string for list/watch calls."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise SelectorError(f"unknown selector operator {op!r} on {key!r}")
    return ",".join(parts)
