"""Well-level QC of DRUG-seq / MAC-seq plates: depth, genes, mitochondrial fraction and
control consistency, each well flagged with its reasons.

Every rule is per plate (plates differ in depth and handling) and robust: the centre is a
median and the spread a MAD, so a handful of bad wells cannot hide themselves by inflating
a standard deviation. Robust z is Iglewicz and Hoaglin's modified z-score,
``(x - median) / (1.4826 MAD)``; when more than half the wells share one value (MAD 0, e.g.
no mitochondrial counts at very low depth) the spread falls back to ``1.2533 x`` the mean
absolute deviation, the usual companion estimator.
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

QC_COLUMNS = ["sample", "plate", "well", "row", "column", "well_type", "compound", "dose",
              "total_counts", "genes_detected", "pct_mito", "control_correlation", "passed",
              "reason"]


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
        reference = np.nanmedian(profiles[np.ix_(expressed, reference_wells)], axis=1)
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
            min_correlation_drop: float = MIN_CORRELATION_DROP) -> pd.DataFrame:
    """QC metrics and pass/fail flags of every well, with the reasons.

    Parameters
    ----------
    counts
        UMI counts, genes x wells (columns are the plate map's ``sample`` index).
    plate_map
        Indexed by sample: ``plate``, ``well``, ``well_type`` (normalized role: sample,
        control, positive_control, empty, other; a ``role`` column takes precedence), and
        optionally ``compound`` and ``dose``.
    gene_symbols
        Symbol per gene id (index of ``counts``); genes whose symbol starts with ``MT-``
        (any case) are mitochondrial.
    max_z, min_depth_fraction, min_genes_fraction, z_guard_fraction, mito_floor,
    min_control_correlation, min_correlation_drop
        Thresholds of the rules below.

    Returns
    -------
    One row per well of ``counts`` (index: sample), columns ``QC_COLUMNS``: sample, plate,
    well, row (letter), column (int), well_type, compound, dose, total_counts,
    genes_detected, pct_mito (NaN without symbols or MT genes), control_correlation (see
    :func:`control_correlation`), passed and reason ('' when passed, reasons joined by
    '; ').

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
      effect, which is what the screen measures.

    Empty wells are not analysed: they get ``passed`` False and reason "empty well" (no
    depth flags, low depth is expected), plus a warning when their depth reaches half the
    plate median, which usually means a plate-map error. Positive controls and "other"
    wells are checked like treated wells. Rules with a z-score need at least 4 reference
    wells on the plate; otherwise only the absolute rules apply.
    """
    missing = [s for s in counts.columns if s not in plate_map.index]
    if missing:
        raise ValueError(f"{len(missing)} well(s) of the counts are not in the plate map, e.g. "
                         f"{', '.join(map(str, missing[:5]))}")
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

    correlation = pd.Series(np.nan, index=counts.columns)
    reasons: dict[str, list[str]] = {s: [] for s in counts.columns}
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
        "reason": ["; ".join(reasons[s]) for s in counts.columns],
    }, index=list(counts.columns))
    return table[QC_COLUMNS]


def _flag_plate(reasons: dict[str, list[str]], samples: pd.Index, present: pd.Index,
                roles: pd.Series, total: pd.Series, detected: pd.Series, pct_mito: pd.Series,
                correlation: pd.Series, is_control: pd.Series, *, max_z: float,
                min_depth_fraction: float, min_genes_fraction: float, z_guard_fraction: float,
                mito_floor: float, min_control_correlation: float,
                min_correlation_drop: float) -> None:
    """Append the reasons of one plate's wells (rules documented in :func:`well_qc`)."""
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
            reasons[sample].append("empty well")
            if depth_median > 0 and total[sample] >= EMPTY_SUSPICIOUS_FRACTION * depth_median:
                reasons[sample].append(f"empty well has {total[sample]:,.0f} counts "
                                       f"({total[sample] / depth_median:.0%} of the plate "
                                       "median): check the plate map")
            continue
        ratio = total[sample] / depth_median if depth_median > 0 else np.nan
        if ratio < min_depth_fraction or (depth_z[sample] < -max_z and ratio < z_guard_fraction):
            reasons[sample].append(f"low depth: {total[sample]:,.0f} counts, {ratio:.0%} of "
                                   f"the plate median {depth_median:,.0f} (robust z of log "
                                   f"counts {depth_z[sample]:.1f})")
        ratio = detected[sample] / genes_median if genes_median > 0 else np.nan
        if ratio < min_genes_fraction or (genes_z[sample] < -max_z and ratio < z_guard_fraction):
            reasons[sample].append(f"few genes detected: {detected[sample]:,}, {ratio:.0%} of "
                                   f"the plate median {genes_median:,.0f} (robust z "
                                   f"{genes_z[sample]:.1f})")
        if mito_z[sample] > max_z and pct_mito[sample] > mito_floor:
            reasons[sample].append(f"high mitochondrial fraction: {pct_mito[sample]:.1f}% vs "
                                   f"plate median {mito_median:.1f}% (robust z "
                                   f"{mito_z[sample]:.1f})")
        if is_control[sample] and not np.isnan(correlation[sample]):
            r, z, r_expected = correlation[sample], corr_z[sample], expected[sample]
            if r < min_control_correlation or (z < -max_z
                                               and drop[sample] >= min_correlation_drop):
                reasons[sample].append(f"control unlike the other controls: correlation "
                                       f"{r:.2f} to their median profile, {r_expected:.2f} "
                                       f"expected at its depth (median across controls "
                                       f"{corr_median:.2f}; robust z {z:.1f})")
