"""A signed regulatory network file (TF -> target) as a study supplies it (``tf_network:``).

The file is a TSV or CSV (optionally gzipped) with one edge per row: ``source`` (the
regulator, e.g. a TF's gene symbol), ``target`` (a gene symbol) and ``weight``, the signed
mode of regulation (+1 activation, -1 repression, or a signed confidence). decoupleR's and
CollecTRI's ``mor`` is accepted for ``weight``. Every problem is reported at once, naming
the file and the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dge_platform._core.problems import Problem, examples
from dge_platform.readers.sample_sheet import read_text_table

WEIGHT_ALIASES = ("weight", "mor")
FORMAT_FIX = ("one edge per row with columns source, target and weight (the signed mode of "
              "regulation: +1 activates, -1 represses)")


def read_network(path: Path, rel: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    """The network as ``source``, ``target``, ``weight`` (float), or every problem with it:
    missing columns, weights that are not signed numbers (non-numeric, zero, infinite),
    edges given twice, and no edge at all."""
    table, problems = read_text_table(path, rel)
    if table is None:
        return None, problems
    weight = next((c for c in WEIGHT_ALIASES if c in table.columns), None)
    missing = [c for c in ("source", "target") if c not in table.columns]
    if missing or weight is None:
        absent = ", ".join(missing + ([] if weight else ["weight"]))
        return None, [Problem(rel, "header", f"missing column(s): {absent} (found "
                              f"{examples(list(table.columns))})", FORMAT_FIX)]
    values = pd.to_numeric(table[weight], errors="coerce")
    bad = table.loc[values.isna() | ~np.isfinite(values) | (values == 0), weight]
    if len(bad):
        problems.append(Problem(rel, f"column '{weight}'", f"{len(bad)} weight(s) are not "
                                f"signed non-zero numbers: {examples(bad.tolist())}",
                                "give each edge +1 (activation), -1 (repression) or a signed "
                                "confidence"))
    blank = table["source"].isna() | table["target"].isna()
    if blank.any():
        problems.append(Problem(rel, "columns 'source', 'target'", f"{int(blank.sum())} "
                                "edge(s) without a source or target", "fill them or drop "
                                "those rows"))
    pairs = table["source"].fillna("") + " -> " + table["target"].fillna("")
    twice = pairs[pairs.duplicated()]
    if len(twice):
        problems.append(Problem(rel, "columns 'source', 'target'", f"{len(twice)} edge(s) "
                                f"given more than once: {examples(twice.unique().tolist())}",
                                "keep one row per source and target"))
    if problems:
        return None, problems
    return pd.DataFrame({"source": table["source"].astype(str),
                         "target": table["target"].astype(str),
                         "weight": values.astype(float)}), []
