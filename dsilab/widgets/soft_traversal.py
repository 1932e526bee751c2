"""Soft-traversal explorer: how a `SoftTree` routes one query at a chosen temperature.

Every node is coloured by P(node | query) (the product of the softmax routing probabilities on its
path, at temperature T); edge width is the routing probability P(child | parent, query). The hard
beam descent is outlined in red, the leaves it reached are squares, leaves holding the query's exact
neighbours carry a star. Recall@k and cost (distance computations) are given for the query and,
averaged, for all the explorer's queries at the same setting.

Note: with beam 1 and no `mass` the hard path follows the largest routing logit at every node, so it
does not depend on T; with beam > 1 (nodes under different parents compete) or a mass threshold it does.
"""
from __future__ import annotations

from typing import Sequence

import ipywidgets as w
import numpy as np

from ..core import DsilabError
from ._static import StaticWidget, esc, figure_png, new_figure, table


def tree_layout(children: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """x, y of every node: leaves evenly spaced depth first, a parent centred over its children, y = -depth."""
    n = len(children)
    x, y = np.zeros(n), np.zeros(n)
    nxt = [0.0]

    def walk(v: int, d: int) -> None:  # iterative depth is at most the tree depth (a few levels)
        y[v] = -d
        if not children[v]:
            x[v] = nxt[0]
            nxt[0] += 1
            return
        for c in children[v]:
            walk(c, d + 1)
        x[v] = np.mean([x[c] for c in children[v]])

    walk(0, 0)
    return x, y


class SoftTraversalExplorer(StaticWidget):
    """A temperature slider, a query picker and beam/mass controls over a trained (or untrained) SoftTree.

    Python API: `pick(i_or_qid)`, `set_temperature(t)`, `set_beam(n)`, `set_mass(m)`; the current
    numbers in `stats()` (per query and averaged over the queries).
    """

    def __init__(self, index, queries: np.ndarray, qids: Sequence[str] | None = None,
                 labels: Sequence[str] | None = None, truth: dict[str, list[str]] | None = None, k: int = 10,
                 temperature: float | None = None, beam: int = 2, mass: float | None = None,
                 t_range: tuple[float, float] = (1e-3, 1.0), max_queries: int = 200):
        from ..ann import SoftTree
        from ..ann.evaluation import as_matrix, check_ids, exact_neighbours, truth_from_indices

        if not isinstance(index, SoftTree):
            raise DsilabError(f"SoftTraversalExplorer needs a dsilab.ann.SoftTree; got {type(index).__name__}.")
        if not (0 < t_range[0] < t_range[1]):
            raise DsilabError(f"t_range must be (low, high) with 0 < low < high; got {t_range}.")
        q = as_matrix(queries, "queries", index.dim)[:max_queries]
        self.index, self.queries, self.k = index, q, k
        self.qids = check_ids(qids, len(np.asarray(queries).reshape(-1, index.dim)), "q")[: len(q)]
        self.labels = list(labels)[: len(q)] if labels is not None else self.qids
        if len(self.labels) != len(q):
            raise DsilabError(f"got {len(self.labels)} labels for {len(q)} queries: one label per query.")
        if truth is None:
            truth = truth_from_indices(self.qids, exact_neighbours(q, index.database, k), index.ids)
        missing = [x for x in self.qids if x not in truth]
        if missing:
            raise DsilabError(f"truth has no exact neighbours for {len(missing)} queries (e.g. {missing[:2]}).")
        self.truth = {x: list(truth[x]) for x in self.qids}  # only the shown queries: the mean is over them
        self._row = {d: i for i, d in enumerate(index.ids)}
        self.t_range = t_range
        self.temperature = float(temperature or index.temperature)
        self.beam_width, self.mass, self.current = beam, mass, 0
        self._layout = tree_layout(index.tree.children)
        self._avg: dict[tuple, tuple[float, float]] = {}
        lo, hi = np.log10(t_range[0]), np.log10(t_range[1])
        self.picker = w.Dropdown(options=[(f"{qid}: {lab[:70]}", i) for i, (qid, lab) in enumerate(zip(self.qids, self.labels))],
                                 value=0, description="query", layout=w.Layout(width="95%"))
        self.slider = w.FloatLogSlider(value=float(np.clip(self.temperature, *t_range)), base=10, min=lo, max=hi,
                                       step=(hi - lo) / 40, description="temperature", readout_format=".3g",
                                       continuous_update=False, style={"description_width": "initial"}, layout=w.Layout(width="70%"))
        self.beam_slider = w.IntSlider(value=beam, min=1, max=max(8, beam), description="beam", continuous_update=False, style={"description_width": "initial"})
        self.mass_slider = w.FloatSlider(value=mass or 1.0, min=0.5, max=1.0, step=0.01, description="mass",
                                         continuous_update=False, style={"description_width": "initial"}, tooltip="stop a level once the kept nodes hold this mass")
        self.picker.add_class("dsilab-soft-query")
        self.slider.add_class("dsilab-soft-temperature")
        self.picker.observe(lambda ch: self.pick(ch["new"]), names="value")
        self.slider.observe(lambda ch: self.set_temperature(ch["new"]), names="value")
        self.beam_slider.observe(lambda ch: self.set_beam(ch["new"]), names="value")
        self.mass_slider.observe(lambda ch: self.set_mass(None if ch["new"] >= 1.0 else ch["new"]), names="value")
        super().__init__([self.picker, self.slider, w.HBox([self.beam_slider, self.mass_slider])],
                         title=f"soft-traversal explorer ({index.tree.n_nodes} nodes, {len(index.tree.leaves)} leaves)")
        self.add_class("dsilab-soft-traversal")
        self.refresh()

    # -- state changes ---------------------------------------------------------------------------------------
    def pick(self, query: int | str) -> None:
        """Show one query, by position or qid."""
        i = self.qids.index(query) if isinstance(query, str) and query in self.qids else query
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.qids):
            raise DsilabError(f"unknown query {query!r}: pass a position in [0, {len(self.qids)}) or one of the qids.")
        if self.picker.value != int(i):
            self.picker.value = int(i)  # its observer calls pick again, which redraws
            return
        self.current = int(i)
        self.refresh()

    def set_temperature(self, t: float) -> None:
        """Route at temperature t (> 0): small = sharp (all mass on one child), large = uniform."""
        if not t > 0:
            raise DsilabError(f"temperature must be > 0; got {t}.")
        if not np.isclose(self.slider.value, t) and self.t_range[0] <= t <= self.t_range[1]:
            self.slider.value = float(t)  # its observer calls set_temperature again, which redraws
            return
        self.temperature = float(t)
        self.refresh()

    def set_beam(self, n: int) -> None:
        from ..ann.tree import check_beam

        n = check_beam(n)
        if self.beam_slider.value != n and n <= self.beam_slider.max:
            self.beam_slider.value = n
            return
        self.beam_width = n
        self.refresh()

    def set_mass(self, m: float | None) -> None:
        if m is not None and not 0 < m <= 1:
            raise DsilabError(f"mass must be in (0, 1] or None; got {m}.")
        self.mass = m
        self.refresh()

    # -- numbers -------------------------------------------------------------------------------------------------
    def _descent(self):
        return self.index.descend(self.queries[self.current], beam=self.beam_width, mass=self.mass,
                                  temperature=self.temperature)

    def stats(self) -> dict[str, float]:
        """Recall@k and cost for the current query and, averaged, over all queries at this setting."""
        from ..ann.evaluation import recall_at_k
        from ..ann.tree import top_k_run_row

        d = self._descent()
        qid = self.qids[self.current]
        row = top_k_run_row(self.queries[self.current], self.index.database, d.candidates, self.index.ids, self.k)
        key = (self.temperature, self.beam_width, self.mass)
        if key not in self._avg:
            res = self.index.search_vectors(self.queries, self.qids, k=self.k, beam=self.beam_width, mass=self.mass,
                                           temperature=self.temperature)
            self._avg[key] = (recall_at_k(res.run, self.truth, self.k), res.mean_cost)
        exp = float(self.index.expected_cost(self.queries[self.current], beam=self.beam_width,
                                             temperature=self.temperature)[0])
        return {"temperature": self.temperature, f"recall@{self.k}": recall_at_k({qid: row}, {qid: self.truth[qid]}, self.k),
                "cost": float(d.cost), "leaves reached": len(d.leaves), "candidates": len(d.candidates),
                "expected cost (soft)": exp, f"mean recall@{self.k}": self._avg[key][0], "mean cost": self._avg[key][1]}

    # -- drawing -------------------------------------------------------------------------------------------------
    def _draw(self) -> tuple[bytes, str]:
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        tree = self.index.tree
        q = self.queries[self.current]
        p = np.atleast_2d(self.index.path_probabilities(q, self.temperature))[0]
        r = np.atleast_2d(self.index.routing_probabilities(q, self.temperature))[0]
        d = self._descent()
        x, y = self._layout
        fig = new_figure(min(3 + 0.09 * len(tree.leaves), 14), 1.2 + 1.2 * (tree.max_depth + 1))
        ax = fig.add_subplot()
        cmap, norm = colormaps["viridis"], Normalize(0, 1)
        for v in range(1, tree.n_nodes):
            u = tree.parent[v]
            ax.plot([x[u], x[v]], [y[u], y[v]], color="#555555", lw=0.2 + 3.0 * r[v], alpha=0.3 + 0.7 * r[v], zorder=1)
        on_path = set(d.expanded) | set(d.leaves)
        for v in on_path - {0}:
            u = tree.parent[v]
            ax.plot([x[u], x[v]], [y[u], y[v]], color="#d62728", lw=2.0, zorder=2)
        leaves = np.asarray(tree.leaves)
        internal = np.asarray(tree.internal)
        size = 60 if tree.n_nodes <= 120 else 25
        ax.scatter(x[internal], y[internal], c=p[internal], cmap=cmap, norm=norm, s=size, edgecolors="black",
                   linewidths=0.4, zorder=3)
        sc = ax.scatter(x[leaves], y[leaves], c=p[leaves], cmap=cmap, norm=norm, s=size * 0.7, marker="s",
                        edgecolors="black", linewidths=0.3, zorder=3)
        reached = np.asarray(d.leaves)
        ax.scatter(x[reached], y[reached], s=size * 1.6, marker="s", facecolors="none", edgecolors="#d62728",
                   linewidths=1.6, zorder=4)
        truth_rows = {self._row[t] for t in self.truth[self.qids[self.current]]}
        gold = [v for v in tree.leaves if truth_rows & set(tree.items[v].tolist())]
        ax.scatter(x[gold], y[gold] - 0.28, marker="*", s=40, color="#ff9f1c", edgecolors="black", linewidths=0.3,
                   zorder=4)
        crowded = {dd for dd in range(tree.max_depth + 1) if np.sum(tree.depth == dd) > 12}
        for v in range(1, tree.n_nodes):
            if tree.depth[v] not in crowded:  # routing probabilities as numbers where they fit
                ax.annotate(f"{r[v]:.2f}", (x[v], y[v]), xytext=(0, 6), textcoords="offset points", fontsize=7,
                            ha="center")
        fig.colorbar(sc, ax=ax, label="P(node | query)", shrink=0.8)
        st = self.stats()
        ax.set_title(f"T = {self.temperature:.3g}, beam {self.beam_width}"
                     + (f", mass {self.mass:.2f}" if self.mass else "")
                     + f": red = hard descent, squares outlined = leaves reached, * = leaf with a true neighbour\n"
                       f"recall@{self.k} {st[f'recall@{self.k}']:.2f}, cost {st['cost']:.0f} distances "
                       f"(all queries: recall {st[f'mean recall@{self.k}']:.2f}, cost {st['mean cost']:.0f})", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        png = figure_png(fig)
        rows = [[k, f"{v:.3g}" if isinstance(v, float) else v] for k, v in st.items()]
        html = (f"<div class='dsilab-soft-info'><b>{esc(self.qids[self.current])}</b>: {esc(self.labels[self.current][:100])}<br>"
                f"<span class='dsilab-soft-t'>T = {self.temperature:.3g}</span>, beam {self.beam_width}"
                f"{f', mass {self.mass:.2f}' if self.mass else ''}; hard path: {esc(d.expanded)} → leaves {esc(d.leaves)}<br>" + table(["", "value"], rows) + "</div>")
        return png, html
