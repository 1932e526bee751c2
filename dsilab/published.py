"""Published results to read ours against: the DSI paper's Natural Questions tables (quoted, not measured here).

Tay et al. 2022, "Transformer Memory as a Differentiable Search Index" (NeurIPS 2022, arXiv 2202.06991):
T5 models fine-tuned on NQ10K / NQ100K / NQ320K (documents = Wikipedia pages of Natural Questions, queries = NQ
questions), Hits@1 and Hits@10 in percent. `Hits@k` there is ir-measures' `Success@k` here.
"""
from __future__ import annotations

CITATION = "Tay et al. 2022, Transformer Memory as a Differentiable Search Index, arXiv 2202.06991"

#: (method, size) -> {collection: (Hits@1, Hits@10)}, percent; the paper's supervised table (indexing + NQ training
#: questions), all four T5 sizes (Base 250M, Large 800M, XL 3B, XXL 11B).
DSI_PAPER_SUPERVISED: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("BM25", "-"): {"NQ10K": (12.4, 33.5), "NQ100K": (20.9, 46.4), "NQ320K": (11.6, 34.4)},
    ("T5 dual encoder", "Base"): {"NQ10K": (16.2, 48.6), "NQ100K": (18.7, 55.2), "NQ320K": (20.5, 58.3)},
    ("T5 dual encoder", "Large"): {"NQ10K": (18.8, 55.7), "NQ100K": (22.3, 60.5), "NQ320K": (22.4, 63.3)},
    ("T5 dual encoder", "XL"): {"NQ10K": (20.8, 59.6), "NQ100K": (23.3, 63.2), "NQ320K": (23.9, 65.8)},
    ("T5 dual encoder", "XXL"): {"NQ10K": (22.1, 61.6), "NQ100K": (24.1, 64.5), "NQ320K": (24.3, 67.3)},
    ("DSI atomic", "Base"): {"NQ10K": (13.0, 38.4), "NQ100K": (23.8, 58.6), "NQ320K": (20.7, 40.9)},
    ("DSI atomic", "Large"): {"NQ10K": (31.3, 59.4), "NQ100K": (17.1, 52.3), "NQ320K": (11.6, 37.6)},
    ("DSI atomic", "XL"): {"NQ10K": (40.1, 76.9), "NQ100K": (19.0, 55.3), "NQ320K": (28.1, 61.9)},
    ("DSI atomic", "XXL"): {"NQ10K": (39.4, 77.0), "NQ100K": (25.3, 67.9), "NQ320K": (24.0, 55.1)},
    ("DSI naive", "Base"): {"NQ10K": (28.1, 48.0), "NQ100K": (18.7, 44.6), "NQ320K": (6.7, 21.0)},
    ("DSI naive", "Large"): {"NQ10K": (34.7, 60.5), "NQ100K": (21.2, 50.7), "NQ320K": (13.3, 33.6)},
    ("DSI naive", "XL"): {"NQ10K": (44.7, 66.4), "NQ100K": (24.0, 55.1), "NQ320K": (16.7, 58.1)},
    ("DSI naive", "XXL"): {"NQ10K": (46.7, 77.9), "NQ100K": (27.5, 62.4), "NQ320K": (23.8, 55.9)},
    ("DSI semantic", "Base"): {"NQ10K": (33.9, 57.3), "NQ100K": (19.0, 44.9), "NQ320K": (27.4, 56.6)},
    ("DSI semantic", "Large"): {"NQ10K": (37.5, 65.1), "NQ100K": (20.4, 50.2), "NQ320K": (35.6, 62.6)},
    ("DSI semantic", "XL"): {"NQ10K": (41.9, 67.1), "NQ100K": (22.4, 52.2), "NQ320K": (39.1, 66.8)},
    ("DSI semantic", "XXL"): {"NQ10K": (48.5, 72.1), "NQ100K": (26.9, 59.5), "NQ320K": (40.4, 70.3)},
}


def dsi_paper_table(sizes: tuple[str, ...] = ("-", "Base", "XXL")):
    """The paper's supervised table as a DataFrame (rows: method and T5 size; columns: collection x Hits@k, percent)."""
    import pandas as pd

    rows = {f"{m} ({s})" if s != "-" else m: {f"{c} Hits@{k}": v[i] for c, v in cols.items() for i, k in enumerate((1, 10))}
            for (m, s), cols in DSI_PAPER_SUPERVISED.items() if s in sizes}
    return pd.DataFrame(rows).T


def dsi_paper_markdown(sizes: tuple[str, ...] = ("-", "Base", "XXL")) -> str:
    """The same table in Markdown, Hits@1 / Hits@10 per collection (for docs/benchmarks.md)."""
    colls = ("NQ10K", "NQ100K", "NQ320K")
    lines = ["| method (T5 size) | " + " | ".join(f"{c} Hits@1 / @10" for c in colls) + " |", "|---" * 4 + "|"]
    for (m, s), cols in DSI_PAPER_SUPERVISED.items():
        if s in sizes:
            lines.append(f"| {m}{f' ({s})' if s != '-' else ''} | "
                         + " | ".join(f"{cols[c][0]} / {cols[c][1]}" for c in colls) + " |")
    return "\n".join(lines)
