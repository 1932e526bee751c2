"""Figures the course draws from its tables: scores with their 95% intervals as error bars and the chance level.

A table of rows x (Hits@k, "Hits@k CI", "chance Hits@k") is what `metrics.results_table`, `hits_table` and
`committed_table` return; `hits_plot` draws it so two methods read at a glance, intervals included.
"""
from __future__ import annotations

from typing import Any

from .core import DsilabError


def hits_plot(table: Any, metrics: tuple[str, ...] = ("Hits@1", "Hits@10"), ax: Any = None, title: str = "",
              xlim: tuple[float, float] = (0.0, 1.02)):
    """One horizontal dot per row and metric, its 95% interval as an error bar, and a dashed line at each metric's
    chance level (when the table has a "chance <metric>" column). Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    import numpy as np

    missing = [m for m in metrics if m not in table or f"{m} CI" not in table]
    if missing:
        raise DsilabError(f"hits_plot: the table lacks {missing} or their ' CI' columns; build it with "
                          "metrics.results_table, hits_table or committed_table.")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(table) * len(metrics) + 1.2))
    rows = list(table.index)
    y = np.arange(len(rows))
    step = 0.8 / len(metrics)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(metrics):
        mean = table[m].astype(float).to_numpy()
        lo, hi = (np.array([ci[j] for ci in table[f"{m} CI"]], dtype=float) for j in (0, 1))
        at = y - 0.4 + step * (i + 0.5)
        ax.errorbar(mean, at, xerr=[mean - lo, hi - mean], fmt="o", capsize=3, color=colours[i % len(colours)], label=m)
        if f"chance {m}" in table:
            ax.axvline(float(table[f"chance {m}"].iloc[0]), ls="--", lw=1, color=colours[i % len(colours)], alpha=0.6)
    ax.set_yticks(y, rows)
    ax.invert_yaxis()
    ax.set_xlim(*xlim)
    ax.set_xlabel("score, with 95% interval (dashed: chance)")
    ax.legend(loc="best", fontsize="small")
    ax.figure.tight_layout()
    if title:
        ax.set_title(title)
    return ax
