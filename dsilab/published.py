"""Published results to read ours against: the DSI paper's Natural Questions tables (quoted, not measured here).

Tay et al. 2022, "Transformer Memory as a Differentiable Search Index" (NeurIPS 2022, arXiv 2202.06991):
T5 models fine-tuned on NQ10K / NQ100K / NQ320K (documents = Wikipedia pages of Natural Questions, queries = NQ
questions), Hits@1 and Hits@10 in percent. `Hits@k` there is ir-measures' `Success@k` here.

`nq320k_table` sets its NQ320K rows beside later papers' (NCI, arXiv 2206.02743; GENRET, arXiv 2304.04171). NQ320K has
one relevant document per query, so their Recall@k (share of queries whose document is in the top k) is Hits@k too.
"""
from __future__ import annotations

from math import isnan
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

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


# --- NQ320K in later papers (quoted, not measured) -------------------------------------------------------------------
# NCI's arXiv v1 (Table 1: Recall@1 88.72) was superseded by later versions (65.86 for NCI Base) and is not quoted.

#: paper -> where its rows were read (paper, arXiv id and version, table).
SOURCES: dict[str, str] = {
    "DSI": "Tay et al. 2022, arXiv 2202.06991, Table 2 (supervised)",
    "NCI": ("Wang et al. 2022, arXiv 2206.02743 (version not read): NQ320k table of the authors' README, "
            "github.com/solidsea98/Neural-Corpus-Indexer-NCI @00898d7"),
    "GENRET": "Sun et al. 2023, arXiv 2304.04171v1, Table 2 (full test)",
}

#: (method, size, paper) -> (Hits@1, Hits@10, MRR@100 or None), percent, on the full NQ320K test queries.
#: "reproduced": the citing paper re-ran that baseline itself; "-": no size stated. GENRET re-ran NCI's own code.
NQ320K_LATER: dict[tuple[str, str, str], tuple[float, float, float | None]] = {
    ("BM25 + DocT5Query", "-", "NCI"): (35.43, 61.83, 44.47),
    ("DSI", "T5-Base", "NCI"): (27.40, 56.60, None),  # = DSI semantic (Base) of Tay et al.
    ("DSI", "T5-Large", "NCI"): (35.60, 62.60, None),  # = DSI semantic (Large)
    ("SEAL", "Large", "NCI"): (59.93, 81.24, 67.70),
    ("NCI", "Base", "NCI"): (65.86, 85.20, 73.12),
    ("NCI", "Large", "NCI"): (66.23, 85.27, 73.37),
    ("NCI", "Ensemble", "NCI"): (70.46, 89.35, 77.82),
    ("BM25", "-", "GENRET"): (29.7, 60.3, 40.2),
    ("DSI reproduced", "T5-Base", "GENRET"): (55.2, 67.4, 59.6),  # with NCI's docids
    ("DSI-QG reproduced", "T5", "GENRET"): (63.1, 80.7, 69.5),
    ("NCI", "-", "GENRET"): (66.4, 85.7, 73.6),
    ("GENRET", "T5-Base", "GENRET"): (68.1, 88.8, 75.9),
}

#: GENRET's Table 2 split of the NQ320K test queries by whether their document had training queries:
#: method -> {"seen" (6,075 queries) | "unseen" (1,755): (Hits@1, Hits@10, MRR@100)}, percent, methods as in
#: NQ320K_LATER. (Its Table 5, trained without the unseen documents, is another setting: unseen Hits@1 DSI 1.3,
#: NCI 15.5, GENRET 34.2.)
GENRET_SEEN_UNSEEN: dict[str, dict[str, tuple[float, float, float]]] = {
    "BM25": {"seen": (29.1, 59.8, 39.5), "unseen": (32.3, 61.9, 42.7)},
    "DSI reproduced": {"seen": (69.7, 83.6, 74.7), "unseen": (1.3, 7.2, 3.5)},
    "DSI-QG reproduced": {"seen": (68.0, 85.0, 74.3), "unseen": (45.9, 65.8, 52.8)},
    "NCI": {"seen": (69.8, 88.5, 76.8), "unseen": (54.5, 75.9, 62.4)},
    "GENRET": {"seen": (70.2, 90.3, 77.7), "unseen": (62.5, 83.6, 70.4)},
}


def nq320k_table(dsi_sizes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """NQ320K Hits@1 / Hits@10 (MRR@100 where given) from the DSI paper and later papers, one row per quoted result.

    Index: (method (size), paper); columns: Hits@1, Hits@10, MRR@100 (NaN if not given), source. `dsi_sizes` keeps only
    those T5 sizes of the DSI paper's rows (default: all).
    """
    import pandas as pd

    rows = {(f"{m} ({s})" if s != "-" else m, "DSI"): (cols["NQ320K"][0], cols["NQ320K"][1], None)
            for (m, s), cols in DSI_PAPER_SUPERVISED.items() if dsi_sizes is None or s in dsi_sizes}
    rows |= {(f"{m} ({s})" if s != "-" else m, p): v for (m, s, p), v in NQ320K_LATER.items()}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["Hits@1", "Hits@10", "MRR@100"]).astype(float)
    df.index = pd.MultiIndex.from_tuples(df.index, names=["method (size)", "paper"])
    return df.assign(source=[SOURCES[p] for _, p in df.index])


def nq320k_markdown(dsi_sizes: tuple[str, ...] | None = None) -> str:
    """The same table in Markdown, one line per quoted result (for docs/benchmarks.md)."""
    lines = ["| method (size) | paper | Hits@1 | Hits@10 | MRR@100 | source |", "|---" * 6 + "|"]
    for (label, paper), r in nq320k_table(dsi_sizes).iterrows():
        mrr = "-" if isnan(r["MRR@100"]) else r["MRR@100"]
        lines.append(f"| {label} | {paper} | {r['Hits@1']} | {r['Hits@10']} | {mrr} | {r['source']} |")
    return "\n".join(lines)
