"""Well-level QC of DRUG-seq / MAC-seq plates: depth, genes, mitochondrial fraction and
control consistency, each well flagged with its reasons.

Every rule is per plate (plates differ in depth and handling) and robust: the centre is a
median and the spread a MAD, so a handful of bad wells cannot hide themselves by inflating
a standard deviation. Robust z is Iglewicz and Hoaglin's modified z-score,
``(x - median) / (1.4826 MAD)``; when more than half the wells share one value (MAD 0, e.g.
no mitochondrial counts at very low depth) the spread falls back to ``1.2533 x`` the mean
absolute deviation, the usual companion estimator.

Count-distribution metrics (QC 2.0) follow EPA's httrpl (``httrlib/R/qc.R``, functions
``countStats``, ``countGini``, ``countQCflag`` and ``outerFences``; github.com/USEPA/
CompTox-httrpl), computed on every gene of the counts (zeros included, as httrpl pads the
counts to all probes):

* ``n_cov5``: genes with at least 5 counts (``sum(counts >= 5)``);
* ``n_sig80``: the fewest genes holding 80 % of the well's counts: counts sorted in
  decreasing order, the first rank whose cumulative proportion is *strictly* above 0.8
  (``min(which(cumProp > 0.8))``);
* ``top10_prop``: proportion of the counts in the 10 most-counted genes (``cumProp[10]``;
  httrpl gives NA for a well with fewer than 10 detected genes, here it is 1: all its
  counts are in its 10 most-counted genes);
* ``gini``: Gini coefficient of the well's gene counts, ``reldist::gini``:
  ``2 sum_i i x_(i) / (n sum x) - (n + 1) / n`` over the n genes sorted increasingly.

httrpl flags LOW_NCOV5, LOW_NSIG80, HIGH_TOP10 and HIGH_GINI against fixed thresholds for
its 20k-probe TempO-Seq panel (and leaves HIGH_TOP10 out by default); here the thresholds
are per plate, Tukey's outer fences of httrpl's ``outerFences``: below ``Q1 - 3 IQR`` for
n_cov5 and n_sig80, above ``Q3 + 3 IQR`` for top10_prop and gini (quartiles as R's default
``quantile`` type 7), over the plate's non-empty wells; top10_prop is reported but, as in
httrpl, fails no well unless asked for (``fence_metrics``). A zero-count well has NaN
n_sig80, top10_prop and gini (it fails on depth anyway).

Cytotoxicity. A treated (``sample``) well is *collapsed* when it fails the depth or the
genes-detected rule of :func:`well_qc`, or when its total counts or genes detected are far
below the plate's control wells: robust z (log10 scale, against the controls' median and
MAD) under ``-max_z`` *and* under ``z_guard_fraction`` (0.3) x the controls' median (the
plate median can itself be dragged down when many wells die). Per compound (over all its
plates), with doses in increasing order, the compound is cytotoxic from the lowest dose
``d*`` such that at ``d*`` and at every higher dose at least half
(``CYTOTOXIC_WELL_FRACTION``) of its wells are collapsed, and at least
``MIN_CYTOTOXIC_WELLS`` (2) wells are collapsed at those doses (one dead well is a technical
failure, not a dose response). Its collapsed wells at doses >= ``d*`` are ``cytotoxic``:
reason "cytotoxic" instead of "low depth" / "few genes detected" / the count-distribution
fences (which a dying well fails as a consequence), and ``passed`` False. Collapsed wells
below ``d*`` keep their ordinary reasons; wells at ``d*`` and above that did not collapse
are judged as usual. With a ``viability`` column in the plate map (fraction in [0, 1], or
percent in [0, 100]: the whole column is read as percent when its maximum is above 1),
treated wells with viability below ``VIABILITY_MIN`` (0.5) are cytotoxic too. Control,
positive-control, empty and other wells are never cytotoxic.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

PLATE_SHAPES = {96: (8, 12), 384: (16, 24)}
ROW_LETTERS = "ABCDEFGHIJKLMNOP"
WELL_PATTERN = re.compile(r"^\s*([A-Za-z])\s*0*(\d{1,3})\s*$")

MAX_ROBUST_Z = 3.5
MIN_DEPTH_FRACTION = 0.1
MIN_GENES_FRACTION = 0.2
Z_GUARD_FRACTION = 0.3
MITO_FLOOR_PERCENT = 10.0
MIN_CONTROL_CORRELATION = 0.1
MIN_CORRELATION_DROP = 0.2
MIN_WELLS_FOR_Z = 4
EMPTY_SUSPICIOUS_FRACTION = 0.5

# httrpl's countStats defaults: ncov = 5, nsig = 0.8, topn = 10; outerFences iqr.factor = 3.
COVERAGE_MIN_COUNT = 5
SIGNAL_FRACTION = 0.8
TOP_N = 10
FENCE_IQR_FACTOR = 3.0
COUNT_STAT_COLUMNS = ["n_cov5", "n_sig80", "top10_prop", "gini"]
FENCE_METRICS = ("n_cov5", "n_sig80", "gini")
"""Metrics whose plate fences fail wells by default: httrpl's default ``qc_flags`` leave
HIGH_TOP10 out ("default is to skip HIGH_TOP10 flag"). top10_prop rests on ten genes, so
any compound effect on one of them moves it (on plain plate fences it failed 37 clean
treated wells of 30 simulated 96-well plates, against 12 for the other three together);
it is reported, and fails wells only when asked for."""
# The side of each metric that flags a well (httrpl: LOW_NCOV5, LOW_NSIG80, HIGH_TOP10,
# HIGH_GINI).
FENCE_SIDES = {"n_cov5": "low", "n_sig80": "low", "top10_prop": "high", "gini": "high"}
_FENCE_TEXT = {"n_cov5": "genes with >= 5 counts", "n_sig80": "genes holding 80% of the "
               "counts", "top10_prop": "of the counts in the 10 top genes",
               "gini": "Gini coefficient of the gene counts"}

CYTOTOXIC = "cytotoxic"
CYTOTOXIC_WELL_FRACTION = 0.5
MIN_CYTOTOXIC_WELLS = 2
VIABILITY = "viability"
VIABILITY_MIN = 0.5
"""Treated wells with a viability below this fraction of the vehicle (0.5 = 50 %) are
cytotoxic."""

QC_COLUMNS = ["sample", "plate", "well", "row", "column", "well_type", "compound", "dose",
              "total_counts", "genes_detected", "pct_mito", "control_correlation", "passed",
              "reason", *COUNT_STAT_COLUMNS, "cytotoxic"]

# Kinds of reasons a well fails for; a cytotoxic well's collapse reasons give way to
# "cytotoxic".
_COLLAPSE_KINDS = {"depth", "genes", "fence"}


def plate_layout(wells: pd.Series) -> tuple[pd.Series, pd.Series, int]:
    """Grid position of each well and the plate format.

    Parameters
    ----------
    wells
        Well names such as ``A01``, ``A1`` or ``a1`` (row letter, column number).

    Returns
    -------
    Zero-based row index and column index (same index as ``wells``), and the format: 96
    when every well fits rows A-H and columns 1-12, else 384.

    Raises
    ------
    ValueError
        For a name that is not a row letter and a column number, or a well outside a
        384-well plate (rows A-P, columns 1-24).
    """
    rows, cols = [], []
    for well in wells:
        match = WELL_PATTERN.match(str(well)) if isinstance(well, str) else None
        if match is None:
            raise ValueError(f"well {well!r} is not a well name like A01 (row letter, column "
                             "number)")
        row = ord(match.group(1).upper()) - ord("A")
        col = int(match.group(2)) - 1
        if not (0 <= row < 16 and 0 <= col < 24):
            raise ValueError(f"well {well!r} is outside a 384-well plate (rows A-P, columns "
                             "1-24)")
        rows.append(row)
        cols.append(col)
    row_index = pd.Series(rows, index=wells.index, dtype=int)
    col_index = pd.Series(cols, index=wells.index, dtype=int)
    n_rows, n_cols = PLATE_SHAPES[96]
    fits_96 = len(wells) == 0 or (row_index.max() < n_rows and col_index.max() < n_cols)
    return row_index, col_index, 96 if fits_96 else 384


def robust_z(values: pd.Series, reference: pd.Series) -> pd.Series:
    """Modified z-score of ``values`` against the median and MAD of ``reference`` (NaNs
    ignored); 0 where the reference has no spread at all or too few wells."""
    ref = reference.dropna().to_numpy(dtype=float)
    if len(ref) < MIN_WELLS_FOR_Z:
        return pd.Series(0.0, index=values.index)
    center = np.median(ref)
    spread = 1.4826 * np.median(np.abs(ref - center))
    if spread == 0:
        spread = 1.2533 * np.mean(np.abs(ref - center))
    if spread == 0:
        return pd.Series(0.0, index=values.index)
    return (values.astype(float) - center) / spread


def log_cpm(counts: pd.DataFrame) -> pd.DataFrame:
    """log2(counts per million + 1) per well; NaN for wells without counts."""
    totals = counts.sum(axis=0).replace(0, np.nan)
    return np.log2(counts / totals * 1e6 + 1)


def _pearson(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``matrix`` (genes x wells) with one profile."""
    x = matrix - matrix.mean(axis=0)
    y = reference - reference.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (y @ x) / (np.sqrt((x**2).sum(axis=0)) * np.sqrt((y**2).sum()))


def control_correlation(counts: pd.DataFrame, is_control: pd.Series) -> pd.Series:
    """Correlation of each well of one plate to the plate's median control profile.

    Profiles are log2 CPM (+1) over the genes detected in at least half the control wells
    (genes absent from controls add only shared zeros, which inflate every correlation
    alike). A control well is compared with the median of the *other* controls, over genes
    selected on the other controls too, so a bad control cannot vouch for itself. (Selecting
    genes on all controls would bias controls the other way at low depth: a gene that just
    passes because this well detected it is, by construction, rarer among the others, which
    drove correlations of clean controls to about 0 at ~1,000 UMIs per well.) NaN without
    controls (or, for the only control, without others), with fewer than 3 such genes, and
    for wells without counts.
    """
    result = pd.Series(np.nan, index=counts.columns)
    flags = is_control.reindex(counts.columns).fillna(False).to_numpy(dtype=bool)
    detected = (counts > 0).to_numpy()
    profiles = log_cpm(counts).to_numpy(dtype=float)

    def correlate(wells: np.ndarray, reference_wells: np.ndarray) -> np.ndarray:
        expressed = detected[:, reference_wells].mean(axis=1) >= 0.5
        if len(reference_wells) == 0 or expressed.sum() < 3:
            return np.full(len(wells), np.nan)
        block = profiles[np.ix_(expressed, reference_wells)]
        # np.median equals np.nanmedian without NaNs (wells without counts), and is faster.
        reference = (np.median(block, axis=1) if np.isfinite(block).all()
                     else np.nanmedian(block, axis=1))
        return _pearson(profiles[np.ix_(expressed, wells)], reference)

    controls = np.flatnonzero(flags)
    others = np.flatnonzero(~flags)
    if len(controls) == 0:
        return result
    if len(others):
        result.iloc[others] = correlate(others, controls)
    for i in controls:
        result.iloc[i] = correlate(np.array([i]), controls[controls != i])[0]
    return result


def _fisher(r: pd.Series) -> pd.Series:
    """Fisher's z-transform, atanh(r): spreads correlations near 1 so that drops at full
    depth (0.97 -> 0.90) and at low depth (0.36 -> 0.10) are on one scale."""
    return np.arctanh(r.clip(-0.999999, 0.999999))


def expected_correlation(correlation: pd.Series, total: pd.Series) -> pd.Series:
    """Correlation of each control expected from its depth: a Theil-Sen line of Fisher-z
    correlation on log10 total counts across the plate's controls (robust to up to ~29 %
    bad controls); the controls' median when there are fewer than 4 or their depths do not
    vary."""
    from scipy.stats import theilslopes

    valid = correlation.notna() & (total > 0)
    expected = pd.Series(correlation[valid].median(), index=correlation.index)
    x = np.log10(total[valid].to_numpy(dtype=float))
    if valid.sum() < MIN_WELLS_FOR_Z or np.ptp(x) == 0:
        return expected
    slope, intercept, _, _ = theilslopes(_fisher(correlation[valid]).to_numpy(), x)
    if not np.isfinite(slope):
        return expected
    with np.errstate(divide="ignore"):
        fitted = np.tanh(intercept + slope * np.log10(total.to_numpy(dtype=float)))
    return expected.where(~valid, pd.Series(fitted, index=correlation.index))


def count_stats(counts: pd.DataFrame, block: int = 256) -> pd.DataFrame:
    """httrpl's count-distribution QC metrics of every well (definitions in the module
    docstring; httrlib ``countStats`` and ``countGini``).

    Parameters
    ----------
    counts
        Counts, genes x wells; every gene counts for the Gini coefficient (zeros included).
    block
        Wells sorted at once (bounds memory: ``block x genes`` doubles, a few times).

    Returns
    -------
    Indexed by well (the columns of ``counts``): ``n_cov5`` (int), ``n_sig80``,
    ``top10_prop`` and ``gini`` (float; NaN for a well without counts).
    """
    values = counts.to_numpy()
    n_genes, n_wells = values.shape
    stats = np.full((n_wells, len(COUNT_STAT_COLUMNS)), np.nan)
    # integer counts sort faster as int32 (and exactly alike)
    small_ints = (n_genes > 0 and np.issubdtype(values.dtype, np.integer)
                  and values.min() >= 0 and values.max() < 2**31)
    if n_genes:
        ranks = np.arange(1, n_genes + 1, dtype=float)
        top = min(TOP_N, n_genes) - 1
        for start in range(0, n_wells, block):
            chunk = np.array(values[:, start:start + block].T,
                             dtype=np.int32 if small_ints else float, order="C")
            stats[start:start + block, 0] = (chunk >= COVERAGE_MIN_COUNT).sum(axis=1)
            chunk.sort(axis=1)
            chunk = chunk.astype(float, copy=False)
            total = chunk.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                # cumulative proportions from the most-counted gene down (httrpl's cumProp);
                # sums of counts are exact in float64, so the > 0.8 test is R's
                proportion = np.cumsum(chunk[:, ::-1], axis=1) / total[:, None]
                n_sig = (proportion <= SIGNAL_FRACTION).sum(axis=1) + 1.0
                top_prop = proportion[:, top]
                gini = 2 * (chunk @ ranks) / (n_genes * total) - (n_genes + 1) / n_genes
            empty = total <= 0
            n_sig[empty] = top_prop[empty] = gini[empty] = np.nan
            stats[start:start + block, 1] = n_sig
            stats[start:start + block, 2] = top_prop
            stats[start:start + block, 3] = gini
    table = pd.DataFrame(stats, index=counts.columns, columns=COUNT_STAT_COLUMNS)
    table["n_cov5"] = table["n_cov5"].fillna(0).astype(int)
    return table


def tukey_fences(values: pd.Series, factor: float = FENCE_IQR_FACTOR) -> tuple[float, float]:
    """Tukey's outer fences, ``(Q1 - factor IQR, Q3 + factor IQR)`` (httrlib ``outerFences``),
    quartiles by linear interpolation (R's ``quantile`` type 7); NaNs ignored, (NaN, NaN)
    with fewer than 4 values."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) < MIN_WELLS_FOR_Z:
        return np.nan, np.nan
    q1, q3 = np.percentile(finite, [25, 75])
    return q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)


def viability_fraction(values: pd.Series) -> pd.Series:
    """A plate map's ``viability`` column as a fraction of the vehicle: numbers (text that
    is not a number becomes NaN), divided by 100 when the column's maximum is above 1
    (percent); the scale is decided for the whole column, not per value."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if numbers.max(skipna=True) > 1:
        numbers = numbers / 100
    return numbers


def _roles(plate_map: pd.DataFrame) -> pd.Series:
    # An annotated plate map (plate_map.annotate_plate_map) keeps raw well types in
    # ``well_type`` and the normalized role in ``role``; prefer the latter.
    column = "role" if "role" in plate_map.columns else "well_type"
    if column not in plate_map.columns:
        raise ValueError("the plate map needs a 'well_type' (or 'role') column with values "
                         "sample, control, positive_control, empty or other")
    return plate_map[column].astype(str)


def well_qc(counts: pd.DataFrame, plate_map: pd.DataFrame,
            gene_symbols: pd.Series | None = None, *,
            max_z: float = MAX_ROBUST_Z,
            min_depth_fraction: float = MIN_DEPTH_FRACTION,
            min_genes_fraction: float = MIN_GENES_FRACTION,
            z_guard_fraction: float = Z_GUARD_FRACTION,
            mito_floor: float = MITO_FLOOR_PERCENT,
            min_control_correlation: float = MIN_CONTROL_CORRELATION,
            min_correlation_drop: float = MIN_CORRELATION_DROP,
            fence_metrics: tuple[str, ...] = FENCE_METRICS,
            fence_factor: float = FENCE_IQR_FACTOR,
            viability_min: float = VIABILITY_MIN) -> pd.DataFrame:
    """QC metrics and pass/fail flags of every well, with the reasons.

    Parameters
    ----------
    counts
        UMI counts, genes x wells (columns are the plate map's ``sample`` index).
    plate_map
        Indexed by sample: ``plate``, ``well``, ``well_type`` (normalized role: sample,
        control, positive_control, empty, other; a ``role`` column takes precedence), and
        optionally ``compound``, ``dose`` and ``viability`` (fraction or percent of the
        vehicle, see the module docstring).
    gene_symbols
        Symbol per gene id (index of ``counts``); genes whose symbol starts with ``MT-``
        (any case) are mitochondrial.
    max_z, min_depth_fraction, min_genes_fraction, z_guard_fraction, mito_floor,
    min_control_correlation, min_correlation_drop
        Thresholds of the rules below.
    fence_metrics
        Count-distribution metrics whose plate fences fail wells: ``FENCE_METRICS``
        (n_cov5, n_sig80, gini; httrpl's default flags) unless given; add ``"top10_prop"``
        for httrpl's optional HIGH_TOP10 flag.
    fence_factor
        IQR multiple of the fences (3: Tukey's outer fences, as httrpl).
    viability_min
        Treated wells below this viability (fraction) are cytotoxic.

    Returns
    -------
    One row per well of ``counts`` (index: sample), columns ``QC_COLUMNS``: sample, plate,
    well, row (letter), column (int), well_type, compound, dose, total_counts,
    genes_detected, pct_mito (NaN without symbols or MT genes), control_correlation (see
    :func:`control_correlation`), passed, reason ('' when passed, reasons joined by
    '; '), then httrpl's n_cov5, n_sig80, top10_prop and gini (:func:`count_stats`) and
    cytotoxic (bool; see the module docstring).

    Notes
    -----
    Reference wells for depth, genes and mito are the plate's non-empty wells (empty wells
    would drag the median down). A well fails for:

    * low depth: total counts below ``min_depth_fraction`` (0.1) x the plate median, or a
      robust z of log counts below ``-max_z`` (-3.5) *and* below ``z_guard_fraction`` (0.3)
      x the median. Depth varies log-normally across wells, so the z-score is taken on the
      log scale; the guard keeps a plate with unusually even depth (tiny MAD) from failing
      wells that would still give usable profiles, and the hard floor catches dead wells
      even on a plate where many wells are bad and the MAD is inflated;
    * few genes detected: the same two rules on genes detected, with a floor of
      ``min_genes_fraction`` (0.2) x the median (genes detected grow sub-linearly with
      depth, so the same fraction is a more severe failure than for counts);
    * high mitochondrial fraction: robust z above ``max_z`` and above ``mito_floor``
      (10 %): stressed or lysed cells, while the floor keeps plates with very little MT
      signal from failing wells at a few percent;
    * control wells only, inconsistent control: correlation to the other controls'
      median profile below ``min_control_correlation`` (0.1, i.e. unrelated to the
      controls; deliberately low because at ~1,000 UMIs per well counting noise alone keeps
      clean controls near r = 0.3-0.4, against ~0.9 at full depth), or a correlation
      below what its depth predicts (:func:`expected_correlation`), on Fisher's z scale
      (atanh r), by a robust z under ``-max_z`` *and* by at least ``min_correlation_drop``
      (0.2 in atanh units: 0.97 -> 0.956, 0.90 -> 0.854, 0.37 -> 0.186). Correlation is
      judged against depth because shallower wells correlate worse from counting noise
      alone (r ~ 0.7 between log depth and correlation across clean simulated controls; on
      raw correlations clean controls at 60 % of the median depth failed); the guard keeps
      the small MAD of 16-24 controls from failing ordinary scatter. A bad control shifts
      the baseline of every test on the plate.
      Treated wells are never failed on correlation: a low correlation is the compound's
      effect, which is what the screen measures;
    * count distribution (httrpl, module docstring): n_cov5 or n_sig80 below the plate's
      lower outer fence, gini (and top10_prop when asked for) above the upper one (reasons
      such as "n_cov5 below plate fence: ..."), and also beyond the fence of the values net
      of the plate's depth trend, both net of a shift the well's compound x dose replicates
      reproduce (:func:`_flag_fences`);
    * cytotoxic (module docstring): reason "cytotoxic" in place of the depth, genes and
      fence reasons.

    Empty wells are not analysed: they get ``passed`` False and reason "empty well" (no
    depth flags, low depth is expected), plus a warning when their depth reaches half the
    plate median, which usually means a plate-map error. Positive controls and "other"
    wells are checked like treated wells. Rules with a z-score or a fence need at least 4
    reference wells on the plate; otherwise only the absolute rules apply.
    """
    missing = [s for s in counts.columns if s not in plate_map.index]
    if missing:
        raise ValueError(f"{len(missing)} well(s) of the counts are not in the plate map, e.g. "
                         f"{', '.join(map(str, missing[:5]))}")
    unknown = sorted(set(fence_metrics) - set(COUNT_STAT_COLUMNS))
    if unknown:
        raise ValueError(f"unknown fence metric(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(COUNT_STAT_COLUMNS)}")
    meta = plate_map.loc[counts.columns]
    roles = _roles(meta)
    row_index, col_index, _ = plate_layout(meta["well"].astype(str))
    plates = meta["plate"] if "plate" in meta.columns else pd.Series("plate", meta.index)

    total = counts.sum(axis=0).astype(float)
    detected = (counts > 0).sum(axis=0).astype(int)
    pct_mito = pd.Series(np.nan, index=counts.columns)
    if gene_symbols is not None:
        symbols = gene_symbols.reindex(counts.index).astype("string")
        is_mito = symbols.str.upper().str.startswith("MT-").fillna(False).to_numpy(dtype=bool)
        if is_mito.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                pct_mito = 100 * counts.loc[is_mito].sum(axis=0) / total.replace(0, np.nan)
    stats = count_stats(counts)

    correlation = pd.Series(np.nan, index=counts.columns)
    reasons: dict[str, list[tuple[str, str]]] = {s: [] for s in counts.columns}
    collapsed = pd.Series(False, index=counts.columns)
    # per metric and well: value, plate fence and plate median; same for the value net of
    # the plate's depth trend
    frames: dict[str, list[pd.DataFrame]] = {}
    for _, wells in plates.groupby(plates, sort=False):
        samples = wells.index
        is_control = roles[samples] == "control"
        correlation[samples] = control_correlation(counts[samples], is_control)
        present = samples[(roles[samples] != "empty").to_numpy()]
        _flag_plate(reasons, samples, present, roles, total, detected, pct_mito,
                    correlation, is_control, max_z=max_z,
                    min_depth_fraction=min_depth_fraction,
                    min_genes_fraction=min_genes_fraction, z_guard_fraction=z_guard_fraction,
                    mito_floor=mito_floor, min_control_correlation=min_control_correlation,
                    min_correlation_drop=min_correlation_drop)
        for metric in fence_metrics:
            frames.setdefault(metric, []).append(
                _plate_fences(stats.loc[present, metric], total[present], metric,
                              fence_factor))
        collapsed[samples] = _collapsed(samples, roles, total, detected, reasons, max_z=max_z,
                                        z_guard_fraction=z_guard_fraction).to_numpy(dtype=bool)

    doses = (pd.to_numeric(meta["dose"], errors="coerce") if "dose" in meta.columns
             else pd.Series(np.nan, meta.index))
    compounds = meta["compound"] if "compound" in meta.columns else pd.Series(None, meta.index)
    for metric, parts in frames.items():
        _flag_fences(reasons, metric, pd.concat(parts), roles, plates, compounds, doses,
                     fence_factor)
    cytotoxic = _cytotoxic_run(collapsed & (roles == "sample"), compounds, doses)
    viability = (viability_fraction(plate_map[VIABILITY]).reindex(meta.index)
                 if VIABILITY in plate_map.columns else pd.Series(np.nan, meta.index))
    low_viability = (roles == "sample") & (viability < viability_min)
    for sample in counts.columns[(cytotoxic | low_viability).to_numpy()]:
        kept = [(k, t) for k, t in reasons[sample] if k not in _COLLAPSE_KINDS]
        text = (f"{CYTOTOXIC}: viability {viability[sample]:.0%} below {viability_min:.0%}"
                if low_viability[sample] else CYTOTOXIC)
        reasons[sample] = [(CYTOTOXIC, text), *kept]

    table = pd.DataFrame({
        "sample": counts.columns,
        "plate": plates.to_numpy(),
        "well": meta["well"].to_numpy(),
        "row": [ROW_LETTERS[i] for i in row_index],
        "column": (col_index + 1).to_numpy(),
        "well_type": roles.to_numpy(),
        "compound": meta["compound"].to_numpy() if "compound" in meta.columns else None,
        "dose": meta["dose"].to_numpy() if "dose" in meta.columns else np.nan,
        "total_counts": total.to_numpy(),
        "genes_detected": detected.to_numpy(),
        "pct_mito": pct_mito.to_numpy(dtype=float),
        "control_correlation": correlation.to_numpy(dtype=float),
        "passed": [not reasons[s] for s in counts.columns],
        "reason": ["; ".join(text for _, text in reasons[s]) for s in counts.columns],
        **{c: stats[c].to_numpy() for c in COUNT_STAT_COLUMNS},
        "cytotoxic": (cytotoxic | low_viability).to_numpy(dtype=bool),
    }, index=list(counts.columns))
    return table[QC_COLUMNS]


def cytotoxic_doses(qc: pd.DataFrame) -> pd.Series:
    """Lowest cytotoxic dose of every treated compound of a :func:`well_qc` table.

    Returns
    -------
    Indexed by compound (treated wells' compounds, in table order), name ``cytotoxic_dose``:
    the lowest dose with a ``cytotoxic`` well, NaN for compounds without one. Potencies
    (PODs) above it are measured on dying cells.
    """
    treated = qc[qc["well_type"] == "sample"]
    treated = treated[treated["compound"].notna()]
    doses = pd.to_numeric(treated["dose"], errors="coerce")
    flagged = treated["cytotoxic"].astype(bool).to_numpy()
    lowest = doses[flagged].groupby(treated["compound"][flagged]).min()
    compounds = pd.Index(pd.unique(treated["compound"]), name="compound")
    return lowest.reindex(compounds).astype(float).rename("cytotoxic_dose")


def _plate_fences(values: pd.Series, total: pd.Series, metric: str,
                  factor: float) -> pd.DataFrame:
    """One metric over one plate's non-empty wells: the value, its outer fence and median
    (``value``, ``fence``, ``centre``), what the plate's depth trend predicts for the well
    (``expected``: a Theil-Sen line on log10 total counts; the plate median when depths do
    not vary or fewer than 4 wells have counts) and the same for the value net of that
    trend (``residual``, ``residual_fence``, ``residual_centre``)."""
    from scipy.stats import theilslopes

    high = FENCE_SIDES[metric] == "high"
    table = pd.DataFrame({"value": values.astype(float)}, index=values.index)
    table["fence"] = tukey_fences(table["value"], factor)[high]
    table["centre"] = table["value"].median()
    with np.errstate(divide="ignore"):
        x = np.log10(total.astype(float))
    usable = np.isfinite(x) & table["value"].notna()
    table["expected"] = table["centre"]
    if usable.sum() >= MIN_WELLS_FOR_Z and np.ptp(x[usable]) > 0:
        slope, intercept, _, _ = theilslopes(table.loc[usable, "value"], x[usable])
        if np.isfinite(slope):
            table.loc[usable, "expected"] = intercept + slope * x[usable]
    table["residual"] = table["value"] - table["expected"]
    table.loc[~usable, "residual"] = np.nan
    table["residual_fence"] = tukey_fences(table["residual"], factor)[high]
    table["residual_centre"] = table["residual"].median()
    return table


def _flag_fences(reasons: dict[str, list[tuple[str, str]]], metric: str, table: pd.DataFrame,
                 roles: pd.Series, plates: pd.Series, compounds: pd.Series, doses: pd.Series,
                 factor: float) -> None:
    """Append the fence reasons of one count-distribution metric (``table``: the
    :func:`_plate_fences` of every plate, indexed by non-empty well).

    A well fails when its value is beyond its plate's outer fence *and* its value net of
    the plate's depth trend is beyond the outer fence of those: n_cov5 and n_sig80 fall
    and gini rises with depth alone, so the plain fence failed clean wells at ~50 % of the
    plate's median depth (which the depth rule deliberately keeps), while a library that is
    poor *for its depth* (a PCR jackpot, low complexity) fails both.

    A non-control well is judged after removing, from both, the shift its compound x dose
    shows in its *other* wells (median over them of value minus their plate's median; wells
    on its own plate when there are any, else on the other plates), as far as that shift
    goes towards the flagged side and no further than the well's own shift: a shift of the
    count distribution that the replicates reproduce is the compound's effect (a compound
    that induces or represses highly expressed genes moves top10_prop and n_sig80), as a
    low control correlation is, while a technical failure is not reproduced. Without it,
    plain plate fences failed 49 clean treated wells of 30 simulated 96-well plates (20,000
    genes; 12 on n_cov5, n_sig80 and gini, 37 on top10_prop). Single-well conditions and
    controls are judged on their own values.
    """
    low = FENCE_SIDES[metric] == "low"
    sign = -1.0 if low else 1.0
    wells = table.index
    treated = ((roles[wells] != "control") & compounds[wells].notna()
               & doses[wells].notna()).to_numpy()
    keys = [compounds[wells][treated], doses[wells][treated]]
    beyond = pd.Series(True, index=wells)
    judged = {}
    for value, fence, centre in (("value", "fence", "centre"),
                                 ("residual", "residual_fence", "residual_centre")):
        shift = table[value] - table[centre]
        # median of the other wells' shifts (leave-one-out, so a bad well cannot excuse
        # itself), from the same plate when the condition has other wells there (same depth
        # and fence), else from its other plates
        same_plate = _leave_one_out_median(shift[treated], [plates[wells][treated], *keys])
        any_plate = _leave_one_out_median(shift[treated], keys)
        others = pd.Series(0.0, index=wells)
        others[treated] = same_plate.fillna(any_plate).fillna(0.0).to_numpy()
        # only a shift towards the flagged side is removed, and no more than the well's own:
        # judging a well against one noisy replicate must not make it look worse
        own = (sign * shift).clip(lower=0).fillna(0.0)
        judged[value] = table[value] - sign * np.minimum((sign * others).clip(lower=0), own)
        beyond &= (judged[value] < table[fence]) if low else (judged[value] > table[fence])
    side, quartile = ("below", "Q1 - ") if low else ("above", "Q3 + ")
    form = "{:,.0f}" if metric.startswith("n_") else "{:.3f}" if metric == "gini" else "{:.1%}"
    for sample in wells[beyond.to_numpy()]:
        row = table.loc[sample]
        net = row["value"] - judged["value"][sample]
        replicates = (f", {form.format(judged['value'][sample])} net of the shift its compound "
                      "x dose replicates show" if net else "")
        reasons[sample].append((
            "fence", f"{metric} {side} plate fence: {form.format(row['value'])} "
                     f"{_FENCE_TEXT[metric]} ({form.format(row['expected'])} expected at its "
                     f"depth{replicates}), fence {form.format(row['fence'])} ({quartile}"
                     f"{factor:g} x IQR of the plate's wells)"))


def _leave_one_out_median(values: pd.Series, keys: list[pd.Series]) -> pd.Series:
    """Per value, the median of the other (non-NaN) values of its group; NaN when it has
    none. Vectorized: in a group sorted increasingly, the others' j-th value is the group's
    j-th or (j + 1)-th, depending on whether the left-out value ranks above j."""
    result = pd.Series(np.nan, index=values.index)
    finite = values.notna().to_numpy()
    if not finite.any():
        return result
    numbers = values.to_numpy(dtype=float)[finite]
    codes = values[finite].groupby([k[finite] for k in keys]).ngroup().to_numpy()
    order = np.lexsort((numbers, codes))
    ordered, groups = numbers[order], codes[order]
    sizes = np.bincount(groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    size, first = sizes[groups], starts[groups]
    rank = np.arange(len(ordered)) - first
    n_others = size - 1

    def other(j: np.ndarray) -> np.ndarray:
        index = first + j + (rank <= j)
        return ordered[np.clip(index, 0, len(ordered) - 1)]

    half = n_others // 2
    median = np.where(n_others % 2 == 1, other(half),
                      (other(np.maximum(half - 1, 0)) + other(half)) / 2)
    median[n_others == 0] = np.nan
    loo = np.empty(len(ordered))
    loo[order] = median
    result[values.index[finite]] = loo
    return result


def _collapsed(samples: pd.Index, roles: pd.Series, total: pd.Series, detected: pd.Series,
               reasons: dict[str, list[tuple[str, str]]], *, max_z: float,
               z_guard_fraction: float) -> pd.Series:
    """Treated wells of one plate whose depth or genes detected collapsed: failed the depth
    or genes rule, or far below the plate's controls (module docstring)."""
    treated = samples[(roles[samples] == "sample").to_numpy()]
    controls = samples[(roles[samples] == "control").to_numpy()]
    failed = np.array([any(k in ("depth", "genes") for k, _ in reasons[s]) for s in treated],
                      dtype=bool)
    for metric in (total.astype(float), detected.astype(float)):
        reference = metric[controls]
        median = reference.median()
        if len(controls) < MIN_WELLS_FOR_Z or not median > 0:
            continue
        z = robust_z(np.log10(metric[treated] + 1), np.log10(reference + 1))
        failed |= ((z < -max_z) & (metric[treated] / median < z_guard_fraction)).to_numpy()
    result = pd.Series(False, index=samples)
    result[treated] = failed
    return result


def _cytotoxic_run(collapsed: pd.Series, compounds: pd.Series, doses: pd.Series) -> pd.Series:
    """Collapsed treated wells at the top doses of their compound (module docstring)."""
    result = pd.Series(False, index=collapsed.index)
    usable = compounds.notna() & doses.notna()
    frame = pd.DataFrame({"compound": compounds[usable], "dose": doses[usable],
                          "collapsed": collapsed[usable]})
    for _, wells in frame.groupby("compound", sort=False):
        fraction = wells.groupby("dose")["collapsed"].mean().sort_index()
        enough = (fraction >= CYTOTOXIC_WELL_FRACTION).to_numpy()
        if not enough[-1]:
            continue
        first = len(enough) - int(np.argmin(enough[::-1])) if not enough.all() else 0
        lowest = fraction.index[first]
        hit = wells["collapsed"] & (wells["dose"] >= lowest)
        if hit.sum() >= MIN_CYTOTOXIC_WELLS:
            result[hit.index[hit.to_numpy()]] = True
    return result


def _flag_plate(reasons: dict[str, list[tuple[str, str]]], samples: pd.Index, present: pd.Index,
                roles: pd.Series, total: pd.Series, detected: pd.Series, pct_mito: pd.Series,
                correlation: pd.Series, is_control: pd.Series, *, max_z: float,
                min_depth_fraction: float, min_genes_fraction: float, z_guard_fraction: float,
                mito_floor: float, min_control_correlation: float,
                min_correlation_drop: float) -> None:
    """Append the reasons of one plate's wells (rules documented in :func:`well_qc`), each
    with its kind (empty, depth, genes, mito, control)."""
    depth_median = total[present].median()
    depth_z = robust_z(np.log10(total[samples] + 1), np.log10(total[present] + 1))
    genes_median = detected[present].median()
    genes_z = robust_z(np.log10(detected[samples] + 1), np.log10(detected[present] + 1))
    mito_median = pct_mito[present].dropna().median() if pct_mito[present].notna().any() \
        else np.nan
    mito_z = robust_z(pct_mito[samples], pct_mito[present])
    controls = is_control.index[is_control.to_numpy(dtype=bool)]
    corr_median = correlation[controls].median()
    expected = expected_correlation(correlation[controls], total[controls])
    drop = _fisher(expected) - _fisher(correlation[controls])
    corr_z = robust_z(-drop, -drop)

    for sample in samples:
        if roles[sample] == "empty":
            reasons[sample].append(("empty", "empty well"))
            if depth_median > 0 and total[sample] >= EMPTY_SUSPICIOUS_FRACTION * depth_median:
                reasons[sample].append(("empty", f"empty well has {total[sample]:,.0f} counts "
                                        f"({total[sample] / depth_median:.0%} of the plate "
                                        "median): check the plate map"))
            continue
        ratio = total[sample] / depth_median if depth_median > 0 else np.nan
        if ratio < min_depth_fraction or (depth_z[sample] < -max_z and ratio < z_guard_fraction):
            reasons[sample].append(("depth", f"low depth: {total[sample]:,.0f} counts, "
                                    f"{ratio:.0%} of the plate median {depth_median:,.0f} "
                                    f"(robust z of log counts {depth_z[sample]:.1f})"))
        ratio = detected[sample] / genes_median if genes_median > 0 else np.nan
        if ratio < min_genes_fraction or (genes_z[sample] < -max_z and ratio < z_guard_fraction):
            reasons[sample].append(("genes", f"few genes detected: {detected[sample]:,}, "
                                    f"{ratio:.0%} of the plate median {genes_median:,.0f} "
                                    f"(robust z {genes_z[sample]:.1f})"))
        if mito_z[sample] > max_z and pct_mito[sample] > mito_floor:
            reasons[sample].append(("mito", f"high mitochondrial fraction: "
                                    f"{pct_mito[sample]:.1f}% vs plate median "
                                    f"{mito_median:.1f}% (robust z {mito_z[sample]:.1f})"))
        if is_control[sample] and not np.isnan(correlation[sample]):
            r, z, r_expected = correlation[sample], corr_z[sample], expected[sample]
            if r < min_control_correlation or (z < -max_z
                                               and drop[sample] >= min_correlation_drop):
                reasons[sample].append(("control", f"control unlike the other controls: "
                                        f"correlation {r:.2f} to their median profile, "
                                        f"{r_expected:.2f} expected at its depth (median "
                                        f"across controls {corr_median:.2f}; robust z "
                                        f"{z:.1f})"))
