"""Points of departure (PODs) of a compound from its concentration-response fits, each with
an interval: gene-level (tPOD, 5th percentile, BMD density mode), category-level (the lowest
gene-set median BMD, BMDExpress / NTP 2018 rules) and pathway-score level.

Definitions (quoted by docs/study-format/screen.md)
--------------------------------------------------
Qualifying gene
    A gene whose fit (``concentration_response``) is usable for a POD, following NTP 2018's
    transcriptomic BMD filters: ``fit_ok`` (a non-constant model, lack-of-fit p > 0.1, a
    BMD), hit call >= ``MIN_HITCALL`` (0.9, tcplfit2's usual activity threshold), BMD no
    higher than the highest tested dose, a BMDL and a BMDU, and BMDU / BMDL <= 40.
Intervals
    Every POD is a statistic (median, percentile, mode) of the qualifying genes' BMDs; its
    ``pod_lower`` and ``pod_upper`` are the same statistic of the same genes' BMDLs and BMDUs
    (BMDExpress reports category "BMDL median" and "BMDU median" this way). Each gene's
    interval is a 90 % profile-likelihood interval, so these bound the POD as the genes'
    uncertainty does, not the choice of genes. Medians and percentiles of pointwise-ordered
    values stay ordered; the density mode of the BMDLs (BMDUs) may not, so the burst's
    bounds are also held at or below (above) its POD.
gene_tpod
    Median BMD of the 20 qualifying genes with the lowest BMDs (Farmahin et al. 2017, Arch
    Toxicol 91:2045); all of them when fewer; at least 5 genes.
gene_p5
    5th percentile of the qualifying genes' BMDs (linear interpolation); at least 20 genes.
gene_burst
    The mode of the density of log10 BMD (Gaussian kernel, Scott's bandwidth, evaluated on a
    512-point grid over the tested range), the dose where most genes turn; at least 10 genes.
category
    Per gene-set collection (GO BP, Reactome, Hallmark, the study's own): the median BMD of
    each set's qualifying genes, for sets with >= 3 qualifying genes making >= 5 % of the
    set's genes measured in the study (BMDExpress category analysis with the NTP 2018
    rules); the POD is the set with the lowest median. One row per collection.
pathway_score
    The lowest BMD among the pathway and gene-set scores (PROGENy, Hallmark GSVA: the
    ``pathway_dose_response`` fits) that qualify as a gene does; its own BMDL and BMDU.
Cytotoxicity
    A POD at or above the compound's lowest cytotoxic dose (well QC) is flagged
    ``above_cytotoxic_dose``: expression changes there may be the cells dying.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import gaussian_kde

MIN_HITCALL = 0.9
MAX_BMDU_BMDL_RATIO = 40.0
TPOD_GENES, TPOD_MIN_GENES = 20, 5
P5_MIN_GENES = 20
BURST_MIN_GENES = 10
CATEGORY_MIN_GENES, CATEGORY_MIN_FRACTION = 3, 0.05
POD_COLUMNS = ["compound", "pod_type", "pod", "pod_lower", "pod_upper", "n_genes", "detail",
               "flags"]
POTENCY_COLUMNS = ["compound", "n_genes_fitted", "n_genes_with_bmd", "tpod",
                   "tpod_gene_count", "tpod_below_lowest_dose", "lowest_bmd", "median_ec50",
                   "reason"]
_BOUNDS = ("bmd", "bmdl", "bmdu")
_POD = ("pod", "pod_lower", "pod_upper")


def qualifying(fits: pd.DataFrame) -> pd.Series:
    """Which fits may enter a POD (see the module docstring), as a boolean Series."""
    bmd, bmdl, bmdu = (fits[c].astype(float) for c in _BOUNDS)
    return (fits["fit_ok"].astype(bool) & (fits["hitcall"].astype(float) >= MIN_HITCALL)
            & bmd.notna() & (bmd <= fits["highest_dose"].astype(float))
            & bmdl.notna() & bmdu.notna() & (bmdu <= MAX_BMDU_BMDL_RATIO * bmdl))


def _density_mode(log_values: np.ndarray, low: float, high: float) -> float:
    grid = np.linspace(low, high, 512)
    if np.ptp(log_values) == 0:
        return float(log_values[0])
    return float(grid[np.argmax(gaussian_kde(log_values)(grid))])


def tpod_genes(genes: pd.DataFrame) -> pd.DataFrame | None:
    """The genes the tPOD is the median of: the ``TPOD_GENES`` (20) qualifying genes with the
    lowest BMDs, all of them when fewer; None below ``TPOD_MIN_GENES`` (5)."""
    return genes.nsmallest(TPOD_GENES, "bmd") if len(genes) >= TPOD_MIN_GENES else None


def _gene_pods(genes: pd.DataFrame, low: float, high: float) -> list[dict]:
    """gene_tpod, gene_p5 and gene_burst of one compound's qualifying genes."""
    n = len(genes)
    rows = []
    sensitive = tpod_genes(genes)
    if sensitive is not None:
        rows.append({"pod_type": "gene_tpod", "n_genes": len(sensitive),
                     **{k: float(sensitive[c].median()) for k, c in zip(_POD, _BOUNDS)},
                     "detail": f"median of the {len(sensitive)} most sensitive of {n} "
                               "qualifying genes"})
    if n >= P5_MIN_GENES:
        rows.append({"pod_type": "gene_p5", "n_genes": n,
                     **{k: float(np.percentile(genes[c], 5)) for k, c in zip(_POD, _BOUNDS)},
                     "detail": f"5th percentile of {n} qualifying genes"})
    if n >= BURST_MIN_GENES:
        # The grid spans the tested doses and the genes' intervals, two decades beyond.
        lo = min(np.log10(low) - 1, np.log10(genes["bmdl"].min()))
        hi = max(np.log10(high) + 1, np.log10(genes["bmdu"].max()))
        pod, lower, upper = (10 ** _density_mode(np.log10(genes[c].to_numpy(float)), lo, hi)
                             for c in _BOUNDS)
        # Medians and percentiles keep each gene's BMDL <= BMD <= BMDU; a mode need not.
        rows.append({"pod_type": "gene_burst", "n_genes": n, "pod": pod,
                     "pod_lower": min(lower, pod), "pod_upper": max(upper, pod),
                     "detail": f"mode of the log10 BMD density of {n} qualifying genes"})
    return rows



class CategoryIndex:
    """One collection's sets over the study's measured genes, as a sparse membership matrix,
    so that every compound's categories are counted in one product."""

    def __init__(self, name: str, sets: dict[str, list[str]], measured: set[str]):
        universe = sorted(measured)
        position = {g: i for i, g in enumerate(universe)}
        rows, cols, self.terms = [], [], []
        for term, members in sets.items():
            hits = sorted({position[g] for g in members if g in position})
            if len(hits) >= CATEGORY_MIN_GENES:
                rows += [len(self.terms)] * len(hits)
                cols += hits
                self.terms.append(term)
        self.name, self.universe = name, pd.Index(universe)
        self.members = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                         shape=(len(self.terms), len(universe)))
        self.sizes = np.asarray(self.members.sum(axis=1)).ravel()

    def lowest(self, genes: pd.DataFrame) -> dict | None:
        """The qualifying set with the lowest median BMD among ``genes`` (indexed by the
        collection's ids, with bmd, bmdl and bmdu), or None."""
        where = self.universe.get_indexer(genes.index)
        genes = genes[where >= 0]
        flags = np.zeros(len(self.universe))
        flags[where[where >= 0]] = 1
        counts = self.members @ flags
        ok = np.flatnonzero((counts >= CATEGORY_MIN_GENES)
                            & (counts >= CATEGORY_MIN_FRACTION * self.sizes))
        if not len(ok):
            return None
        values = genes[list(_BOUNDS)].to_numpy(float)
        row_of = pd.Series(np.arange(len(genes)), index=self.universe[where[where >= 0]])
        best = None
        for term in ok:
            inside = row_of.reindex(self.universe[self.members[term].indices]).dropna()
            median = np.median(values[inside.to_numpy(int)], axis=0)
            if best is None or median[0] < best[0][0]:
                best = (median, term)
        median, term = best
        k, n = int(counts[term]), int(self.sizes[term])
        return {"pod_type": "category", "n_genes": k,
                **{p: float(v) for p, v in zip(_POD, median)},
                "detail": f"{self.name}: {self.terms[term]} ({k} of {n} genes)"}


ID_COLUMNS = {"ensembl": "gene_id", "symbol": "gene_symbol"}


def category_indices(collections: list[tuple[str, str, dict[str, list[str]]]],
                     measured: pd.DataFrame) -> list[tuple[str, CategoryIndex]]:
    """(gene column, index) per collection; ``collections`` as ``load_collections`` gives
    them (name, id type 'symbol' or 'ensembl', sets), ``measured`` the study's measured genes
    (gene_id, gene_symbol)."""
    indices = []
    for name, id_type, sets in collections:
        column = ID_COLUMNS[id_type]
        indices.append((column, CategoryIndex(name, sets, set(measured[column].dropna()))))
    return indices


def compound_pods(dose_response: pd.DataFrame, pathway_dose_response: pd.DataFrame,
                  categories: list[tuple[str, CategoryIndex]],
                  cytotoxic_dose: pd.Series | None = None) -> pd.DataFrame:
    """Every POD of every compound (module docstring), one row per compound and POD type
    (per collection for categories).

    Parameters
    ----------
    dose_response
        Gene fits with ``compound``, ``gene_id``, ``gene_symbol`` and the
        ``concentration_response`` columns.
    pathway_dose_response
        The same for pathway and gene-set scores, with ``collection`` and ``source``.
    categories
        ``category_indices`` of the study's collections.
    cytotoxic_dose
        Lowest cytotoxic dose per compound (NaN or absent: none seen).

    Returns
    -------
    compound, pod_type (gene_tpod, gene_p5, gene_burst, category, pathway_score), pod,
    pod_lower, pod_upper, n_genes, detail (which genes, set or score), flags
    (``above_cytotoxic_dose`` or '').
    """
    genes = dose_response[qualifying(dose_response)] if len(dose_response) else dose_response
    scores = (pathway_dose_response[qualifying(pathway_dose_response)]
              if len(pathway_dose_response) else pathway_dose_response)
    cytotoxic = cytotoxic_dose if cytotoxic_dose is not None else pd.Series(dtype=float)
    rows = []
    compounds = sorted(set(dose_response.get("compound", []))
                       | set(pathway_dose_response.get("compound", [])))
    for compound in compounds:
        found = []
        mine = genes[genes["compound"] == compound].sort_values("bmd")
        if len(mine):
            fitted = dose_response[dose_response["compound"] == compound]
            found += _gene_pods(mine, fitted["lowest_dose"].min(), fitted["highest_dose"].max())
            for column, index in categories:
                keyed = mine.dropna(subset=[column]).drop_duplicates(column).set_index(column)
                lowest = index.lowest(keyed)
                found += [lowest] if lowest else []
        for score in scores[scores["compound"] == compound].sort_values("bmd").head(1).itertuples():
            found.append({"pod_type": "pathway_score", "n_genes": None,
                          **{p: float(getattr(score, c)) for p, c in zip(_POD, _BOUNDS)},
                          "detail": f"{score.collection}: {score.source}"})
        limit = float(cytotoxic.get(compound, np.nan))
        for row in found:
            row["compound"] = compound
            row["flags"] = "above_cytotoxic_dose" if row["pod"] >= limit else ""
        rows += found
    return pd.DataFrame(rows, columns=POD_COLUMNS).astype({"n_genes": "Int64"})


def compound_potency(dose_response: pd.DataFrame) -> pd.DataFrame:
    """The per-compound summary of its gene fits and its tPOD.

    tPOD = median BMD of :func:`tpod_genes`: the 20 qualifying genes (module docstring) with
    the lowest BMDs; with fewer qualifying genes, all of them; below 5 the tPOD is NaN and
    ``reason`` says why. BMDs below the lowest tested dose count (excluding
    them would discard a potent compound's most sensitive genes) but are extrapolations
    between the controls and the lowest dose, so a tPOD below the lowest dose is flagged
    (``tpod_below_lowest_dose``): read it as "below the tested range". The same tPOD, with
    its interval, is the ``gene_tpod`` row of ``compound_pods``.

    Returns
    -------
    One row per compound: compound, n_genes_fitted, n_genes_with_bmd (fit_ok with a BMD,
    in range or not), tpod, tpod_gene_count (genes the median is over), lowest_bmd (of the
    qualifying genes), median_ec50 (of the tPOD genes with an EC50),
    tpod_below_lowest_dose, reason ('' when the tPOD is defined).
    """
    rows = []
    usable = qualifying(dose_response)
    for compound, table in dose_response.groupby("compound", sort=True):
        with_bmd = table[table["fit_ok"].astype(bool) & table["bmd"].notna()]
        chosen = table[usable.loc[table.index]]
        sensitive = tpod_genes(chosen)
        enough = sensitive is not None
        tpod = float(sensitive["bmd"].median()) if enough else np.nan
        rows.append({
            "compound": compound, "n_genes_fitted": len(table),
            "n_genes_with_bmd": len(with_bmd), "tpod": tpod,
            "tpod_gene_count": len(sensitive) if enough else 0,
            "tpod_below_lowest_dose": bool(tpod < table["lowest_dose"].min()),
            "lowest_bmd": float(chosen["bmd"].min()) if len(chosen) else np.nan,
            "median_ec50": float(sensitive["ec50"].median()) if enough else np.nan,
            "reason": "" if enough else (
                f"only {len(chosen)} qualifying gene(s) (fit_ok, hit call >= {MIN_HITCALL}, "
                f"BMD within the tested doses, BMDU/BMDL <= {MAX_BMDU_BMDL_RATIO:g}); the "
                f"tPOD needs at least {TPOD_MIN_GENES}"),
        })
    return pd.DataFrame(rows, columns=POTENCY_COLUMNS)
