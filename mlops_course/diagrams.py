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
                 figsize: tuple[float, float] = (8.0, 3.0)):
    """Labelled boxes joined by arrows (default: a left-to-right chain)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    n = len(boxes)
    positions = list(positions) if positions is not None else [(i * 1.6, 0.0) for i in range(n)]
    edges = list(edges) if edges is not None else [(i, i + 1) for i in range(n - 1)]
    for i, (label, (x, y)) in enumerate(zip(boxes, positions)):
        ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=3,
                bbox={"boxstyle": "round,pad=0.45", "fc": COLOURS[i % len(COLOURS)], "ec": "none", "alpha": 0.25})
    for a, b in edges:
        (xa, ya), (xb, yb) = positions[a], positions[b]
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya),
                    arrowprops={"arrowstyle": "-|>", "lw": 1.4, "color": "#444", "shrinkA": 28, "shrinkB": 28})
    xs, ys = [p[0] for p in positions], [p[1] for p in positions]
    ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig
