"""The Pareto front of a trade-off: the choices no other choice beats on both axes at once."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]], maximize_y: bool = False) -> list[int]:
    """Indices of the non-dominated points, by increasing x. Lower x is better (latency); lower y is better
    (size), or higher with `maximize_y` (accuracy). A point equal to another on both axes stays on the front
    with it: neither beats the other."""
    sign = -1.0 if maximize_y else 1.0

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        ax, ay, bx, by = a[0], sign * a[1], b[0], sign * b[1]
        return ax <= bx and ay <= by and (ax < bx or ay < by)

    front = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda i: (points[i][0], sign * points[i][1]))
