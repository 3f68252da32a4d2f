"""Cell-level QC of single-cell counts: depth, genes, mitochondrial fraction and doublets,
each cell flagged with its reasons.

Rules follow the single-cell best-practices book (Heumos et al. 2023, "Quality control"):
outliers are judged per capture (captures differ in depth and ambient RNA) and robustly,
the centre being the median and the spread the median absolute deviation (MAD), so that a
tail of bad cells cannot hide itself by inflating a standard deviation. The MAD is
**scaled** by 1.4826 (a consistent estimate of the SD for normal data, as in
``well_qc``), so ``nmads`` reads as robust standard deviations: the defaults accept
log depth and log genes within 5 SD of the capture median and a mitochondrial fraction up
to 3 SD above it. The book uses the unscaled MAD with the same numbers, which is 1.48x
stricter; on simulated clean cells (log-normal mitochondrial share) its mito rule failed
~5 % of healthy cells, against ~1 % here. Pass ``nmads=5 / 1.4826`` and
``mito_nmads=3 / 1.4826`` to reproduce the book.

Doublets are scored with Scrublet (Wolock et al. 2019, ``scanpy.pp.scrublet``), on each
capture separately: doublets only form within a droplet run, and simulating doublets from
cells of two captures would create profiles that cannot occur.

Everything here works on a cells x genes AnnData of raw integer counts in a sparse ``X``;
the input is never modified and the cell matrix is never densified.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import sparse

QC_REASONS = ("no_counts", "low_counts", "high_counts", "low_genes", "high_genes", "high_mito",
              "doublet")
MAD_SCALE = 1.4826  # MAD -> SD for normal data
MIN_CELLS_FOR_DOUBLETS = 100
MIN_GENES_FOR_DOUBLETS = 3  # scrublet drops cells with fewer genes before scoring
QC_COLUMNS = ["total_counts", "n_genes", "pct_mito", "doublet_score", "predicted_doublet",
              "passed", "reason"]


def mito_genes(adata) -> np.ndarray:
    """Boolean mask of mitochondrial genes: symbol starting with ``MT-`` (any case).

    The symbol is ``var["gene_symbol"]``; genes without one (column missing or NA) are
    judged on their var name instead (harmless for Ensembl ids, right for symbol-indexed
    matrices).
    """
    names = pd.Series(np.asarray(adata.var_names.astype(str)), dtype="string")
    if "gene_symbol" in adata.var.columns:
        symbols = pd.Series(np.asarray(adata.var["gene_symbol"].astype(object)),
                            dtype="string")
        names = symbols.fillna(names)
    return names.str.upper().str.startswith("MT-").fillna(False).to_numpy(dtype=bool)


def qc_metrics(adata) -> pd.DataFrame:
    """Per-cell depth, genes detected and mitochondrial fraction.

    Parameters
    ----------
    adata
        Cells x genes, raw counts in ``X`` (sparse or dense).

    Returns
    -------
    Indexed by ``obs_names``: ``total_counts`` (int64), ``n_genes`` (int64, genes with a
    non-zero count) and ``pct_mito`` (0-100, share of counts on ``MT-`` genes; NaN for cells
    without counts and for every cell when no gene is mitochondrial, so that "not measured"
    is not read as "0 %").
    """
    x = adata.X
    if sparse.issparse(x):
        x = sparse.csr_matrix(x)
        total = np.asarray(x.sum(axis=1, dtype=np.float64)).ravel()
        detected = np.diff(x.indptr)
        if x.nnz and (x.data == 0).any():  # explicit zeros are not detections
            detected = np.asarray((x != 0).sum(axis=1)).ravel()
    else:
        x = np.asarray(x)
        total = x.sum(axis=1, dtype=np.float64)
        detected = (x != 0).sum(axis=1)
    mito = mito_genes(adata)
    pct = np.full(adata.n_obs, np.nan)
    if mito.any():
        mito_total = np.asarray(x[:, mito].sum(axis=1, dtype=np.float64)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = np.where(total > 0, 100.0 * mito_total / total, np.nan)
    return pd.DataFrame({
        "total_counts": np.rint(total).astype(np.int64),
        "n_genes": np.asarray(detected).astype(np.int64),
        "pct_mito": pct,
    }, index=adata.obs_names.copy())


def _as_groups(groups, index: pd.Index) -> pd.Series:
    """Group labels as strings aligned to ``index`` (a Series with that index is reindexed,
    anything else is taken positionally); missing labels become the group "nan"."""
    if isinstance(groups, pd.Series) and groups.index.equals(index):
        values = groups
    elif isinstance(groups, pd.Series) and index.isin(groups.index).all():
        values = groups.reindex(index)
    else:
        values = pd.Series(np.asarray(groups), index=index)
        if len(values) != len(index):
            raise ValueError(f"groups has {len(values)} labels for {len(index)} cells")
    return values.astype(object).where(values.notna(), "nan").astype(str)


def _mad_bounds(values: pd.Series, groups: pd.Series, nmads: float
                ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per-cell median, lower and upper bound (median -/+ nmads x scaled MAD) of the
    cell's group; NaN values are ignored, and bounds are NaN where the MAD is 0 or NaN."""
    grouped = values.groupby(groups, sort=False)
    median = grouped.transform("median")
    mad = MAD_SCALE * (values - median).abs().groupby(groups, sort=False).transform("median")
    mad = mad.where(mad > 0)
    return median, median - nmads * mad, median + nmads * mad


def outlier_flags(metrics: pd.DataFrame, groups: pd.Series, *, nmads: float = 5.0,
                  mito_nmads: float = 3.0, min_counts: float | None = None,
                  max_counts: float | None = None, min_genes: float | None = None,
                  max_genes: float | None = None,
                  max_pct_mito: float | None = None) -> pd.DataFrame:
    """Flag outlier cells per group with MAD rules and optional absolute thresholds.

    Parameters
    ----------
    metrics
        Output of :func:`qc_metrics` (``total_counts``, ``n_genes``, ``pct_mito``).
    groups
        Group (capture) of each cell, indexed like ``metrics`` (or positional).
    nmads
        Width, in scaled MADs (robust SDs), of the accepted band of log1p(total_counts) and
        log1p(n_genes) around the group median.
    mito_nmads
        Cells with ``pct_mito`` above the group median + ``mito_nmads`` scaled MADs are
        flagged.
    min_counts, max_counts, min_genes, max_genes, max_pct_mito
        Absolute limits, applied in addition to the MAD rules (a cell outside either
        fails); ``None`` for none. Bounds are inclusive: ``min_counts=500`` keeps a cell
        with exactly 500 counts.

    Returns
    -------
    Boolean columns ``no_counts``, ``low_counts``, ``high_counts``, ``low_genes``,
    ``high_genes``, ``high_mito`` indexed like ``metrics``.

    Notes
    -----
    * ``no_counts`` (total 0) is exclusive: such cells get no other flag, and are left out
      of their group's medians and MADs.
    * Depth and genes are judged on the log scale, where they are roughly symmetric; the
      mitochondrial fraction on its own scale and only upwards.
    * A MAD of 0 (e.g. no mitochondrial genes, or a group of one cell) flags nothing for
      that metric in that group; absolute limits still apply. NaN ``pct_mito`` (no counts,
      or no MT genes annotated) is never flagged.
    """
    groups = _as_groups(groups, metrics.index)
    total = metrics["total_counts"].astype(float)
    genes = metrics["n_genes"].astype(float)
    mito = metrics["pct_mito"].astype(float)
    no_counts = total <= 0
    present = ~no_counts

    log_counts = np.log1p(total.where(present))
    log_genes = np.log1p(genes.where(present))
    _, low_c, high_c = _mad_bounds(log_counts, groups, nmads)
    _, low_g, high_g = _mad_bounds(log_genes, groups, nmads)
    _, _, high_m = _mad_bounds(mito.where(present), groups, mito_nmads)

    flags = pd.DataFrame({
        "no_counts": no_counts,
        "low_counts": log_counts < low_c,
        "high_counts": log_counts > high_c,
        "low_genes": log_genes < low_g,
        "high_genes": log_genes > high_g,
        "high_mito": mito > high_m,
    }, index=metrics.index)
    absolute = {"low_counts": (total, min_counts, np.less),
                "high_counts": (total, max_counts, np.greater),
                "low_genes": (genes, min_genes, np.less),
                "high_genes": (genes, max_genes, np.greater),
                "high_mito": (mito, max_pct_mito, np.greater)}
    for column, (values, limit, beyond) in absolute.items():
        if limit is not None:
            flags[column] |= beyond(values, limit).fillna(False).astype(bool)
    for column in flags.columns[1:]:
        flags[column] = flags[column].fillna(False).astype(bool) & present
    return flags.astype(bool)


def _slim(x, obs_names: pd.Index, var_names: pd.Index):
    import anndata

    return anndata.AnnData(X=x, obs=pd.DataFrame(index=obs_names),
                           var=pd.DataFrame(index=var_names))


def doublet_scores(adata, groups: pd.Series, *, threshold: float | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """Scrublet doublet scores and calls, each group (capture) scored separately.

    Parameters
    ----------
    adata
        Cells x genes, raw counts in a sparse ``X``. Not modified.
    groups
        Capture of each cell (indexed like ``obs``, or positional).
    threshold
        Doublet score above which a cell is called a doublet, for every group; ``None``
        lets Scrublet place it per group at the minimum between the two modes of the
        simulated doublets' score histogram.
    seed
        Random state of the doublet simulation and PCA.

    Returns
    -------
    Indexed by ``obs_names``: ``doublet_score`` (float, NaN where not scored) and
    ``predicted_doublet`` (bool). ``attrs["doublet_groups"]`` holds, per group, a dict
    with ``status`` ("scored", "no_threshold", "too_few_cells" or "failed: <error>"),
    ``n_scored`` and ``threshold`` (NaN when none was set).

    Notes
    -----
    Runs ``scanpy.pp.scrublet`` (exact neighbours, ``use_approx_neighbors=False``; defaults
    otherwise: expected doublet rate 0.05, 2 simulated doublets per cell, 30 PCs) on one
    group at a time, which is what its ``batch_key`` does, but on a slim AnnData holding
    only that group's rows: memory stays at one capture's worth instead of the two full
    copies of the matrix that ``batch_key`` makes, and cells Scrublet drops (fewer than 3
    genes) do not make it fail.

    * Groups with fewer than 100 scorable cells are not scored (NaN, False): too few cells
      to simulate representative doublets.
    * When the automatic threshold cannot be found (simulated scores not bimodal, which
      happens when a capture has a single cell type) the scores are kept but no cell of
      the group is called a doublet ("no_threshold"): scores are still useful to plot and
      rank, while a wrong threshold would remove real cells.
    * A group on which Scrublet raises (e.g. too few variable genes) is reported as
      "failed: ..." with a warning and left unscored, so one odd capture does not stop the
      QC of the others.
    """
    groups = _as_groups(groups, adata.obs_names)
    return _score_doublets(adata, groups, np.ones(adata.n_obs, dtype=bool),
                           threshold=threshold, seed=seed)


def _score_doublets(adata, groups: pd.Series, eligible: np.ndarray, *,
                    threshold: float | None, seed: int) -> pd.DataFrame:
    """:func:`doublet_scores` restricted to the ``eligible`` cells (others NaN, False),
    without copying the matrix: each group's rows are sliced straight from ``X``."""
    import scanpy as sc

    x = sparse.csr_matrix(adata.X)  # no copy for a CSR matrix
    n_genes = np.diff(x.indptr)
    scores = np.full(adata.n_obs, np.nan)
    called = np.zeros(adata.n_obs, dtype=bool)
    report: dict[str, dict] = {}
    codes, labels = pd.factorize(groups, sort=True)
    for code, label in enumerate(labels):
        rows = np.flatnonzero((codes == code) & eligible & (n_genes >= MIN_GENES_FOR_DOUBLETS))
        if len(rows) < MIN_CELLS_FOR_DOUBLETS:
            report[label] = {"status": "too_few_cells", "n_scored": 0, "threshold": np.nan}
            continue
        sub = _slim(x[rows].astype(np.float32), adata.obs_names[rows], adata.var_names)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                sc.pp.scrublet(sub, threshold=threshold, use_approx_neighbors=False,
                               random_state=seed, verbose=False)
        except Exception as error:  # noqa: BLE001 - one odd capture must not stop QC
            warnings.warn(f"doublet scoring failed for group {label!r} ({len(rows)} cells): "
                          f"{error}; its cells are left unscored", stacklevel=3)
            report[label] = {"status": f"failed: {error}", "n_scored": 0,
                             "threshold": np.nan}
            continue
        obs = sub.obs.reindex(adata.obs_names[rows])
        scores[rows] = obs["doublet_score"].to_numpy(dtype=float)
        called[rows] = obs["predicted_doublet"].fillna(False).to_numpy(dtype=bool)
        found = "threshold" in sub.uns["scrublet"]
        report[label] = {"status": "scored" if found else "no_threshold",
                         "n_scored": int(obs["doublet_score"].notna().sum()),
                         "threshold": float(sub.uns["scrublet"]["threshold"]) if found
                         else np.nan}
    table = pd.DataFrame({"doublet_score": scores, "predicted_doublet": called},
                         index=adata.obs_names.copy())
    table.attrs["doublet_groups"] = report
    return table


def cell_qc(adata, capture_key: str, *, seed: int = 0, doublets: bool = True,
            doublet_threshold: float | None = None, nmads: float = 5.0,
            mito_nmads: float = 3.0, min_counts: float | None = None,
            max_counts: float | None = None, min_genes: float | None = None,
            max_genes: float | None = None, max_pct_mito: float | None = None) -> pd.DataFrame:
    """QC metrics, doublet scores and pass/fail of every cell, with the reasons.

    Parameters
    ----------
    adata
        Cells x genes, raw counts in a sparse ``X``; ``obs[capture_key]`` names the capture
        (10x channel / library) of each cell. Not modified.
    capture_key
        Column of ``obs`` grouping cells for the MAD rules and for doublet scoring.
    seed
        Random state of doublet scoring.
    doublets
        Score doublets (Scrublet); ``False`` leaves ``doublet_score`` NaN.
    doublet_threshold
        Fixed Scrublet threshold for all captures (``None``: automatic per capture).
    nmads, mito_nmads, min_counts, max_counts, min_genes, max_genes, max_pct_mito
        See :func:`outlier_flags`.

    Returns
    -------
    Indexed by ``obs_names``, columns ``QC_COLUMNS``: total_counts, n_genes, pct_mito,
    doublet_score, predicted_doublet, passed, reason (flags joined by ";" in
    ``QC_REASONS`` order, "" when passed). ``attrs["doublet_groups"]`` reports doublet
    scoring per capture (see :func:`doublet_scores`).

    Notes
    -----
    Doublets are scored only on cells without a ``no_counts``, ``low_counts`` or
    ``low_genes`` flag: empty droplets and debris are failed anyway, and as parents of
    simulated doublets they would only blur the simulation. Their ``doublet_score`` is NaN.
    """
    if capture_key not in adata.obs.columns:
        raise ValueError(f"obs has no column {capture_key!r} naming the capture of each cell "
                         f"(columns: {', '.join(map(str, adata.obs.columns))})")
    groups = _as_groups(adata.obs[capture_key], adata.obs_names)
    metrics = qc_metrics(adata)
    flags = outlier_flags(metrics, groups, nmads=nmads, mito_nmads=mito_nmads,
                          min_counts=min_counts, max_counts=max_counts, min_genes=min_genes,
                          max_genes=max_genes, max_pct_mito=max_pct_mito)
    table = metrics.copy()
    table["doublet_score"] = np.nan
    table["predicted_doublet"] = False
    report: dict[str, dict] = {}
    if doublets:
        eligible = ~(flags["no_counts"] | flags["low_counts"] | flags["low_genes"]).to_numpy()
        scored = _score_doublets(adata, groups, eligible, threshold=doublet_threshold,
                                 seed=seed)
        table["doublet_score"] = scored["doublet_score"]
        table["predicted_doublet"] = scored["predicted_doublet"]
        report = scored.attrs["doublet_groups"]
    flags["doublet"] = table["predicted_doublet"].astype(bool)
    flags = flags[list(QC_REASONS)]
    table["predicted_doublet"] = table["predicted_doublet"].astype(bool)
    table["passed"] = ~flags.any(axis=1)
    table["reason"] = _join_reasons(flags)
    table = table[QC_COLUMNS]
    table.attrs["doublet_groups"] = report
    return table


def _join_reasons(flags: pd.DataFrame) -> pd.Series:
    """Flag names joined by ";" per row, vectorised over the distinct flag patterns."""
    matrix = flags.to_numpy(dtype=bool)
    codes = matrix @ (1 << np.arange(matrix.shape[1]))
    names = list(flags.columns)
    text = {code: ";".join(n for i, n in enumerate(names) if code >> i & 1)
            for code in np.unique(codes)}
    return pd.Series([text[c] for c in codes], index=flags.index, dtype=object)


def failed_by_reason(table: pd.DataFrame) -> pd.Series:
    """Cells flagged per reason over the whole table (a cell with several reasons counts
    under each), reasons that flagged nothing left out."""
    # The summary's last row totals every group.
    counts = qc_summary(table, pd.Series("cells", index=table.index)).iloc[-1][list(QC_REASONS)]
    return counts[counts > 0].astype(np.int64).rename("cells").rename_axis("reason")


def qc_summary(table: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Per group: cells, cells passing, fraction passing and cells flagged per reason.

    Parameters
    ----------
    table
        Output of :func:`cell_qc`.
    groups
        Group of each cell (e.g. ``adata.obs[capture_key]``), indexed like ``table``.

    Returns
    -------
    One row per group (index named ``group``, sorted) and a final ``all`` row: ``n_cells``,
    ``n_passed``, ``fraction_passed``, ``median_counts``, ``median_genes``,
    ``median_pct_mito`` (of all cells) and one count column per reason in ``QC_REASONS``
    (a cell with several reasons counts under each). With ``attrs["doublet_groups"]`` on
    the table, also ``doublet_status`` and ``doublet_threshold`` per group.
    """
    groups = _as_groups(groups, table.index)
    reasons = table["reason"].astype(str)
    frame = pd.DataFrame({reason: reasons.str.split(";").apply(lambda r, x=reason: x in r)
                          for reason in QC_REASONS}, index=table.index)
    frame["n_cells"] = 1
    frame["n_passed"] = table["passed"].astype(int)
    grouped = frame.groupby(groups.rename("group"), sort=True)
    counts = grouped.sum()
    medians = table[["total_counts", "n_genes", "pct_mito"]].groupby(
        groups.rename("group"), sort=True).median()
    total = frame.sum().to_frame("all").T
    total_medians = table[["total_counts", "n_genes", "pct_mito"]].median().to_frame("all").T
    summary = pd.concat([counts.join(medians), total.join(total_medians)])
    summary.index.name = "group"
    summary = summary.rename(columns={"total_counts": "median_counts",
                                      "n_genes": "median_genes",
                                      "pct_mito": "median_pct_mito"})
    summary["fraction_passed"] = summary["n_passed"] / summary["n_cells"].where(
        summary["n_cells"] > 0)
    columns = ["n_cells", "n_passed", "fraction_passed", "median_counts", "median_genes",
               "median_pct_mito", *QC_REASONS]
    summary = summary[columns]
    for column in ["n_cells", "n_passed", *QC_REASONS]:
        summary[column] = summary[column].astype(np.int64)
    report = table.attrs.get("doublet_groups")
    if report:
        summary["doublet_status"] = [report.get(g, {}).get("status", "") if g != "all"
                                     else "" for g in summary.index]
        summary["doublet_threshold"] = [report.get(g, {}).get("threshold", np.nan)
                                        if g != "all" else np.nan for g in summary.index]
    return summary
