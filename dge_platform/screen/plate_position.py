"""Plate-position effects in screens: do a plate's vehicle (DMSO) wells differ by row, by
column, or between the outer ring of wells and the inner wells?

Edge wells evaporate faster and sit at other temperatures, so their cells grow differently;
dispensers and readers work row by row or column by column. Such effects confound any
compound placed there. They are looked for in the control wells, which share one treatment,
so that any structure in them is technical:

* variables: the first principal components of the controls' expression (log scale, e.g.
  VST or log CPM; each gene centred over the plate's controls) over the ``N_TOP_GENES``
  (500) most variable genes among them (DESeq2's ``plotPCA`` default ``ntop = 500``: over
  every gene the counting noise of thousands of weak genes buries a shift of a few
  hundred) of the more expressed half (mean over the controls at least the median: on log
  CPM the most variable genes are otherwise the weakest, whose 0 or 1 counts jump by a log
  unit), and log10 total counts (depth);
* positions: row (one-way ANOVA over the rows the controls occupy), column (the same over
  columns), edge (first or last row or column of the plate format vs the rest: two-group
  ANOVA, i.e. Student's t-test, F = t^2).

Each test is an F test; ``effect`` is eta^2 (between-group share of the variance) for row
and column, and the edge-minus-inner difference of means for edge (log10 units for depth;
PC score units for PCs, whose sign is arbitrary: each PC is oriented so that its largest
gene loading is positive). Plates with fewer than ``MIN_CONTROL_WELLS`` (8) usable controls,
or without controls both on the edge and inside, are skipped. The p-values are per test, not
adjusted: with 3 PCs and depth a clean plate gives an edge warning at alpha 0.01 about 4 %
of the time.

The remedy is to model position: :func:`position_covariates` gives each well ``edge``
("edge"/"inner") and text ``row``/``column`` labels for the design (e.g. ``~ edge +
condition``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform.screen.well_qc import PLATE_SHAPES, ROW_LETTERS, plate_layout

MIN_CONTROL_WELLS = 8
N_TOP_GENES = 500
EDGE_ALPHA = 0.01
DEPTH = "log10_depth"
POSITIONS = ("row", "column", "edge")
EFFECT_COLUMNS = ["plate", "variable", "position", "statistic", "df", "df_resid", "pvalue",
                  "effect", "n_wells"]


def edge_wells(rows: pd.Series, columns: pd.Series, plate_format: int) -> pd.Series:
    """Whether each well (zero-based row and column index, as :func:`plate_layout` gives)
    is on the outer ring of a plate of that format (first or last row or column)."""
    n_rows, n_cols = PLATE_SHAPES[plate_format]
    return (rows == 0) | (rows == n_rows - 1) | (columns == 0) | (columns == n_cols - 1)


def position_covariates(plate_map: pd.DataFrame) -> pd.DataFrame:
    """Plate position of every well, as design covariates.

    Parameters
    ----------
    plate_map
        One row per well with ``well`` (``A01``...) and, when there are several plates,
        ``plate``; the format (96 or 384) is inferred per plate from its wells
        (:func:`dge_platform.screen.well_qc.plate_layout`).

    Returns
    -------
    Same index: ``edge`` ("edge" for the first or last row or column of the plate format,
    else "inner"), ``row`` (the letter) and ``column`` (``c01``...: text, so that a design
    reads it as a factor, not a number).
    """
    plates = (plate_map["plate"].astype(str) if "plate" in plate_map.columns
              else pd.Series("plate", index=plate_map.index))
    table = pd.DataFrame(index=plate_map.index, columns=["edge", "row", "column"], dtype=object)
    for _, wells in plates.groupby(plates, sort=False):
        rows, cols, plate_format = plate_layout(plate_map.loc[wells.index, "well"].astype(str))
        edge = edge_wells(rows, cols, plate_format)
        table.loc[wells.index, "edge"] = np.where(edge, "edge", "inner")
        table.loc[wells.index, "row"] = [ROW_LETTERS[r] for r in rows]
        table.loc[wells.index, "column"] = [f"c{c + 1:02d}" for c in cols]
    return table


def position_effects(expression: pd.DataFrame, qc: pd.DataFrame, n_pcs: int = 3,
                     n_top_genes: int = N_TOP_GENES) -> pd.DataFrame:
    """Tests of row, column and edge effects among each plate's control wells.

    Parameters
    ----------
    expression
        Log-scale expression (e.g. VST), genes x wells (columns: the ``sample`` index of
        ``qc``).
    qc
        The :func:`dge_platform.screen.well_qc.well_qc` table (``sample``, or the index,
        naming the wells; ``plate``, ``well``, ``well_type``, ``passed``, ``total_counts``),
        every well of each plate (the plate format is inferred from them).
    n_pcs
        Principal components tested (fewer when a plate has fewer controls).
    n_top_genes
        Most variable genes (among the plate's controls) the components are computed on.

    Returns
    -------
    Columns ``EFFECT_COLUMNS``: plate, variable (``PC1``... and ``log10_depth``), position
    (row, column, edge), statistic (F), df and df_resid (its degrees of freedom), pvalue,
    effect (eta^2 for row and column; edge-minus-inner mean for edge) and n_wells (control
    wells used). Controls are the plate's ``control`` wells that passed QC and are in
    ``expression``. Skipped plates have no rows, nor has a position with fewer than two
    groups or no residual degrees of freedom (e.g. every control in its own column).
    """
    rows_out: list[dict] = []
    if "sample" in qc.columns:  # e.g. the stored table, with a plain row index
        qc = qc.set_index(qc["sample"].astype(str))
    plates = qc["plate"].astype(str) if "plate" in qc.columns else pd.Series("plate", qc.index)
    for plate, members in plates.groupby(plates, sort=False):
        wells = qc.loc[members.index]
        row_index, col_index, plate_format = plate_layout(wells["well"].astype(str))
        edge = edge_wells(row_index, col_index, plate_format)
        usable = ((wells["well_type"] == "control") & wells["passed"].astype(bool)
                  & wells.index.isin(expression.columns) & (wells["total_counts"] > 0))
        controls = wells.index[usable.to_numpy()]
        is_edge = edge[controls].to_numpy(dtype=bool)
        if len(controls) < MIN_CONTROL_WELLS:  # (no edge control: no edge test, see _anova)
            continue
        variables = _control_pcs(expression[controls], n_pcs, n_top_genes)
        variables[DEPTH] = np.log10(wells.loc[controls, "total_counts"].to_numpy(dtype=float))
        groups = {"row": row_index[controls].to_numpy(), "column": col_index[controls].to_numpy(),
                  "edge": is_edge}
        for variable, values in variables.items():
            for position in POSITIONS:
                test = _anova(values, groups[position])
                if test is None:
                    continue
                statistic, df, df_resid, pvalue, eta2 = test
                effect = (values[is_edge].mean() - values[~is_edge].mean()
                          if position == "edge" else eta2)
                rows_out.append({"plate": plate, "variable": variable, "position": position,
                                 "statistic": statistic, "df": df, "df_resid": df_resid,
                                 "pvalue": pvalue, "effect": effect,
                                 "n_wells": len(controls)})
    table = pd.DataFrame(rows_out, columns=EFFECT_COLUMNS)
    return table.astype({"df": int, "df_resid": int, "n_wells": int}) if len(table) else table


def edge_warnings(table: pd.DataFrame, alpha: float = EDGE_ALPHA) -> list[str]:
    """One message per plate whose control wells differ between edge and inner wells at
    p < ``alpha`` in depth or a principal component (from :func:`position_effects`)."""
    hits = table[(table["position"] == "edge") & (table["pvalue"] < alpha)]
    messages = []
    for plate, rows in hits.groupby("plate", sort=False):
        parts = [f"{r.variable} (p = {r.pvalue:.2g}, edge - inner {r.effect:+.3g})"
                 for r in rows.itertuples()]
        messages.append(f"plate {plate}: edge wells differ from inner wells among its "
                        f"{rows['n_wells'].iloc[0]} control wells in {', '.join(parts)}; "
                        "compounds on the edge are confounded with it: model it "
                        "(position_effects: edge) or keep compounds off the outer ring")
    return messages


def _control_pcs(expression: pd.DataFrame, n_pcs: int, n_top: int) -> dict[str, np.ndarray]:
    """Scores of the first principal components of the control wells over the ``n_top``
    most variable of their more expressed half of genes (centred over them; genes with
    missing values or no variance left out), each oriented so that its largest gene loading
    is positive."""
    values = expression.to_numpy(dtype=float)
    values = values[np.isfinite(values).all(axis=1)]
    means = values.mean(axis=1, keepdims=True)
    centred = values - means
    variance = (centred**2).sum(axis=1)
    # the more expressed half: on log CPM the most variable genes are otherwise the weakest
    # (a count of 0 or 1 is a jump of a log unit or more)
    keep = (variance > 0) & (means[:, 0] >= np.median(means))
    candidates = np.flatnonzero(keep)
    if len(candidates) > n_top:
        # stable order: ties are broken by gene order, not by the sort algorithm
        candidates = np.sort(candidates[np.argsort(-variance[candidates], kind="stable")[:n_top]])
    centred = centred[candidates]
    n_wells = centred.shape[1]
    if centred.shape[0] == 0 or n_wells < 3:
        return {}
    u, s, vt = np.linalg.svd(centred.T, full_matrices=False)  # wells x genes
    n = min(n_pcs, n_wells - 1, int((s > s[0] * 1e-10).sum()))
    pcs = {}
    for i in range(n):
        sign = 1.0 if vt[i, np.argmax(np.abs(vt[i]))] >= 0 else -1.0
        pcs[f"PC{i + 1}"] = sign * u[:, i] * s[i]
    return pcs


def _anova(values: np.ndarray, groups: np.ndarray
           ) -> tuple[float, int, int, float, float] | None:
    """One-way ANOVA: F, df between, df within, p-value and eta^2; None without two groups
    or residual degrees of freedom."""
    from scipy.stats import f as f_dist

    labels, codes = np.unique(groups, return_inverse=True)
    n, k = len(values), len(labels)
    if k < 2 or n <= k:
        return None
    means = np.bincount(codes, weights=values) / np.bincount(codes)
    grand = values.mean()
    between = float((np.bincount(codes) * (means - grand) ** 2).sum())
    within = float(((values - means[codes]) ** 2).sum())
    total = between + within
    df, df_resid = k - 1, n - k
    if total <= 0:
        return np.nan, df, df_resid, np.nan, np.nan
    with np.errstate(divide="ignore"):
        statistic = (between / df) / (within / df_resid) if within > 0 else np.inf
    pvalue = float(f_dist.sf(statistic, df, df_resid)) if np.isfinite(statistic) else 0.0
    return float(statistic), df, df_resid, pvalue, between / total
