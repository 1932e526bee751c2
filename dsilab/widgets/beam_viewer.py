"""Docid beam viewer: constrained beam search for one query, drawn as the tree it explores.

Column t holds step t's candidate tokens: green = kept (a surviving beam or a finished docid),
grey = allowed by the trie but outscored, red = pruned by the trie (not the start of any docid)
though the model liked it. Below: the final ranked docids with titles and relevance marks.
Works with any model `dsilab.decode.trace` accepts (it only reads the `BeamTrace`).
"""
from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..core import DsilabError, Qrels
from ..data import Collection
from ._static import StaticWidget, esc, figure_png, new_figure, table

KEPT, DROPPED, PRUNED = "#2ca02c", "#9e9e9e", "#d62728"


class BeamViewer(StaticWidget):
    """Pick a query (dropdown or free text) and a beam width; decoding re-runs and the beam tree redraws.

    Python API: `pick(qid)`, `ask(text)`, `set_beam(n)`; state in `qid`, `query`, `beam_size`, `trace`.
    """

    def __init__(self, model: Any, collection: Collection | None = None, queries: dict[str, str] | None = None,
                 qrels: Qrels | None = None, titles: dict[str, str] | None = None, split: str = "test", k: int = 10,
                 beam_size: int = 5, top: int = 3, n_queries: int = 20, max_beam: int = 20):
        if collection is not None:
            q, r = collection.split(split)
            queries = queries if queries is not None else q
            qrels = qrels if qrels is not None else r
            titles = titles if titles is not None else {d: doc.title or doc.text[:60] for d, doc in collection.docs.items()}
        if not queries:
            raise DsilabError("BeamViewer needs queries: pass a collection (its split) or a dict qid -> text.")
        if k < 1 or beam_size < 1 or top < 1:
            raise DsilabError(f"k, beam_size and top must be >= 1; got k={k}, beam_size={beam_size}, top={top}.")
        self.model, self.k, self.top = model, k, top
        self.queries = dict(list(queries.items())[:n_queries])
        self.qrels, self.titles = qrels or {}, titles or {}
        self.docids = getattr(model, "docids", None)  # DocidTree: names the doc a finished beam spells
        self.qid: str | None = next(iter(self.queries))
        self.query = self.queries[self.qid]
        self.beam_size = beam_size
        self.trace = None
        self.dropdown = w.Dropdown(options=[(f"{q}: {t[:70]}", q) for q, t in self.queries.items()], value=self.qid,
                                   description="query", layout=w.Layout(width="95%"))
        self.text = w.Text(placeholder="or type any query and press Enter", continuous_update=False, style={"description_width": "initial"},
                           description="free text", layout=w.Layout(width="95%"))
        self.beam = w.IntSlider(value=beam_size, min=1, max=max(max_beam, beam_size), description="beam width",
                                continuous_update=False, style={"description_width": "initial"})
        self.dropdown.add_class("dsilab-beam-query")
        self.beam.add_class("dsilab-beam-width")
        self.dropdown.observe(lambda ch: self.pick(ch["new"]), names="value")
        self.text.observe(lambda ch: ch["new"].strip() and self.ask(ch["new"]), names="value")
        self.beam.observe(lambda ch: self.set_beam(ch["new"]), names="value")
        super().__init__([self.dropdown, self.text, self.beam], title="docid beam viewer")
        self.add_class("dsilab-beam-viewer")
        self.refresh()

    # -- state changes ---------------------------------------------------------------------------------------
    def pick(self, qid: str) -> None:
        """Decode one of the listed queries."""
        if qid not in self.queries:
            raise DsilabError(f"query {qid!r} is not in the viewer's list; choose one of {list(self.queries)[:5]}...")
        if self.dropdown.value != qid:
            self.dropdown.value = qid  # its observer calls pick(qid) again, which redraws
            return
        self.qid, self.query = qid, self.queries[qid]
        self.refresh()

    def ask(self, text: str) -> None:
        """Decode a free-text query (no relevance marks: it has no qrels)."""
        if not text.strip():
            raise DsilabError("the query text is empty; type a question.")
        self.qid, self.query = None, text.strip()
        self.refresh()

    def set_beam(self, n: int) -> None:
        """Change the beam width and decode again."""
        if int(n) < 1:
            raise DsilabError(f"beam width must be >= 1; got {n}.")
        if self.beam.value != int(n):
            self.beam.value = int(n)  # its observer calls set_beam(n) again, which redraws
            return
        self.beam_size = int(n)
        self.refresh()

    # -- decoding and drawing -----------------------------------------------------------------------------------
    def _decode(self):
        from ..decode import trace

        key = (self.query, self.beam_size)
        if self.trace is None or getattr(self, "_key", None) != key:
            self.trace = trace(self.model, self.query, k=self.k, beam_size=self.beam_size, top=self.top)
            self._key = key
        return self.trace

    def _doc_of(self, tokens: list[str]) -> str | None:
        return self.docids.parse(tokens[:-1]) if self.docids is not None and tokens else None

    def layout(self) -> list[list[dict]]:
        """Per step, the drawn candidates: parent and own token path, probability, kind (kept/dropped/pruned), y."""
        tr = self._decode()
        ypos: dict[tuple[str, ...], float] = {(): 0.0}
        cols: list[list[dict]] = []
        for st in tr.steps:
            col = []
            order = sorted(range(len(st.beams)), key=lambda b: -ypos.get(tuple(st.beams[b][0]), 0.0))
            for b in order:
                cands = [c for c in st.candidates if c.beam == b]
                cands.sort(key=lambda c: (not c.kept, not c.allowed, -c.prob))
                for c in cands:
                    parent = tuple(st.beams[b][0])
                    kind = "kept" if c.kept else "dropped" if c.allowed else "pruned"
                    col.append({"parent": parent, "path": parent + (c.token,), "token": c.token, "prob": c.prob,
                                "score": c.score, "kind": kind})
            n = len(col)
            for i, node in enumerate(col):
                node["y"] = (n - 1) / 2 - i
                if node["kind"] == "kept":
                    ypos[node["path"]] = node["y"]
            cols.append(col)
        return cols

    def _draw(self) -> tuple[bytes, str]:
        tr = self._decode()
        cols = self.layout()
        tall = max([len(c) for c in cols] + [1])
        fig = new_figure(2.0 + 2.1 * len(cols), min(1.2 + 0.24 * tall, 14))
        ax = fig.add_subplot()
        prev = {(): 0.0}
        for t, col in enumerate(cols):
            for node in col:
                y0 = prev.get(node["parent"], 0.0)
                colour = {"kept": KEPT, "dropped": DROPPED, "pruned": PRUNED}[node["kind"]]
                ax.plot([t, t + 1], [y0, node["y"]], color=colour, lw=0.6 + 2.5 * node["prob"],
                        ls="-" if node["kind"] != "pruned" else ":", alpha=0.8)
                ax.scatter([t + 1], [node["y"]], color=colour, s=14, marker="o" if node["kind"] != "pruned" else "x",
                           zorder=3)
                label = f"{node['token'][:12]} {node['prob']:.2f}"
                doc = self._doc_of(list(node["path"])) if node["kind"] == "kept" else None
                if doc is not None:
                    rel = " ✓" if doc in self.qrels.get(self.qid or "", {}) else ""
                    label += f" → {doc}{rel}"
                ax.annotate(label, (t + 1, node["y"]), xytext=(4, 0), textcoords="offset points", fontsize=7,
                            va="center", color="black" if node["kind"] == "kept" else colour)
            prev = {n["path"]: n["y"] for n in col if n["kind"] == "kept"}
        ax.scatter([0], [0], color="black", s=20)
        ax.annotate("start", (0, 0), xytext=(-4, 0), textcoords="offset points", ha="right", fontsize=8, va="center")
        ax.set_xlim(-0.6, len(cols) + 1.2)
        ax.set_xticks(range(1, len(cols) + 1), [f"step {t}" for t in range(len(cols))], fontsize=8)
        ax.set_yticks([])
        for s in ("left", "right", "top"):
            ax.spines[s].set_visible(False)
        ax.set_title(f"beam {self.beam_size}: green kept, grey outscored, red pruned by the trie (width ~ p)\n"
                     f"query: {self.query[:80]}", fontsize=9)
        png = figure_png(fig)
        rel = self.qrels.get(self.qid or "", {})
        rows = [[i + 1, d, "".join(self.docids.tokens(d)) if self.docids is not None else "", self.titles.get(d, "")[:60],
                 f"{s:.2f}", "✓" if d in rel else ""] for i, (d, s) in enumerate(tr.ranking)]
        steps = [[st.step, len(st.beams), sum(c.kept for c in st.candidates), sum(not c.allowed for c in st.candidates),
                  f"{max(st.invalid_mass):.2f}"] for st in tr.steps]
        found = [i + 1 for i, (d, _) in enumerate(tr.ranking) if d in rel]
        verdict = (f"relevant doc at rank {found[0]}" if found else
                   f"relevant doc not in the top {self.k}" if rel else "no relevance judgements for this query")
        html = (f"<div class='dsilab-beam-info'><b>{esc(self.query)}</b> ({esc(verdict)})<br>"
                + table(["rank", "doc", "docid", "title", "log p", "relevant"], rows)
                + "<br>" + table(["step", "beams in", "kept", "pruned shown", "max invalid mass"], steps) + "</div>")
        return png, html
