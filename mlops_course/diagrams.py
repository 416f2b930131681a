"""Diagrams drawn with matplotlib, so lessons need no remote image."""

from __future__ import annotations

import math
from collections.abc import Sequence

LIFECYCLE = [
    ("Data", "collect, version,\nvalidate"),
    ("Model", "train, track,\nregister"),
    ("Deployment", "package,\nserve"),
    ("Monitoring", "metrics, drift,\nalerts"),
    ("Feedback", "labels arrive,\nretrain"),
]
COLOURS = ["#4C72B0", "#55A868", "#C44E52", "#8172B2", "#CCB974", "#64B5CD", "#937860"]


def lifecycle_diagram(stages: Sequence[tuple[str, str]] = LIFECYCLE, title: str = "The MLOps lifecycle"):
    """Stages on a circle joined by arrows: the loop every lesson of the course walks around."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    n = len(stages)
    angles = [math.pi / 2 - 2 * math.pi * i / n for i in range(n)]
    points = [(math.cos(a), math.sin(a)) for a in angles]
    for i, ((name, detail), (x, y)) in enumerate(zip(stages, points)):
        ax.add_patch(plt.Circle((x, y), 0.36, color=COLOURS[i % len(COLOURS)], alpha=0.9, zorder=2))
        ax.text(x, y + 0.08, name, ha="center", va="center", fontsize=11, weight="bold", color="white", zorder=3)
        ax.text(x, y - 0.11, detail, ha="center", va="center", fontsize=7.5, color="white", zorder=3)
        nx, ny = points[(i + 1) % n]
        ax.annotate("", xy=(x + 0.62 * (nx - x), y + 0.62 * (ny - y)),
                    xytext=(x + 0.38 * (nx - x), y + 0.38 * (ny - y)),
                    arrowprops={"arrowstyle": "-|>", "lw": 2, "color": "#444"}, zorder=1)
    ax.text(0, 0, "CI/CD and\norchestration\nrun the loop", ha="center", va="center", fontsize=9, style="italic")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.45, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return fig


def flow_diagram(boxes: Sequence[str], edges: Sequence[tuple[int, int]] | None = None,
                 positions: Sequence[tuple[float, float]] | None = None, title: str = "",
                 figsize: tuple[float, float] = (8.0, 3.0), *, fit_arrows: bool = False):
    """Labelled boxes joined by arrows (default: a left-to-right chain).

    Arrows stop 28 points short of each box's centre, which suits a chain of short labels. With
    ``fit_arrows=True`` they end at the outline of each box instead: use it for wide boxes or slanted arrows.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    n = len(boxes)
    positions = list(positions) if positions is not None else [(i * 1.6, 0.0) for i in range(n)]
    edges = list(edges) if edges is not None else [(i, i + 1) for i in range(n - 1)]
    texts = [ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=3,
                     bbox={"boxstyle": "round,pad=0.45", "fc": COLOURS[i % len(COLOURS)], "ec": "none",
                           "alpha": 0.25})
             for i, (label, (x, y)) in enumerate(zip(boxes, positions))]
    for a, b in edges:
        (xa, ya), (xb, yb) = positions[a], positions[b]
        arrow = {"arrowstyle": "-|>", "lw": 1.4, "color": "#444", "shrinkA": 28, "shrinkB": 28}
        if fit_arrows:  # clip the arrow at both boxes' outlines, then leave a small gap
            arrow.update(patchA=texts[a].get_bbox_patch(), patchB=texts[b].get_bbox_patch(), shrinkA=3, shrinkB=3)
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), arrowprops=arrow)
    xs, ys = [p[0] for p in positions], [p[1] for p in positions]
    ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig
