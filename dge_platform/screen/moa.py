"""Mechanism-of-action measures of a transcriptomic compound screen (DRUG-seq) from its wells.

The CMap recipe (Subramanian et al., Cell 2017, "A next generation connectivity map") makes
the signatures: per-well robust z-scores against the plate's vehicle wells (level 4), a
label-free feature set, and one consensus signature per compound x dose by MODZ, a weighted
mean of the replicate wells that down-weights wells disagreeing with the others (level 5),
with CMap's quality measures (replicate correlation cc_q75, signature strength, TAS).

The retrieval measures are the JUMP Cell Painting recipe on top of copairs (Kalinin et al.
2025, "A versatile information retrieval framework for evaluating profile strength and
similarity"): *phenotypic activity* (can a condition's wells, on any plate, be told from the
vehicle wells of their own plate: mAP of replicate retrieval; each plate normalised to its
own controls, replicates on different plates count, as in CMap and JUMP) and *consistency*
(do compounds of one MoA class retrieve each other: mAP per class). copairs computes both
mAPs; their p-values are exact permutation tests instead of copairs' null, which does not
hold level on these data (see :func:`activity_map`, :func:`consistency_map`; copairs' p is
kept alongside; the activity test relabels wells within each plate). Lastly
:func:`moa_enrichment` turns each condition's nearest other compounds
(``similarity.nearest_neighbors``) into a MoA hypothesis.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations
from math import comb, prod

import numpy as np
import pandas as pd
from copairs.map import average_precision, mean_average_precision
from scipy.stats import hypergeom, rankdata
from threadpoolctl import threadpool_limits

from dge_platform._core.stats import bh_adjust

# cmapPy robust_zscore's floor: VST is log2-like, so a MAD under 0.1 (a 7 % spread) belongs
# to near-constant genes whose z would explode from counting noise.
MIN_MAD = 0.1
# Comparable to CMap's 978 landmark genes: enough to cover the main expression programs.
N_FEATURES = 1000
# Relabellings (or copairs null draws) per test: p down to 1e-4, enough for BH over hundreds.
NULL_SIZE = 10_000
# cmapPy calculate_weights' floor: a well that correlates with none still counts a little.
MIN_WEIGHT = 0.01
# CMap's signature strength threshold: genes moved by at least 2 robust sd.
STRENGTH_Z = 2.0
ALPHA = 0.05
# Relabellings x features evaluated at once: the working arrays (float64) stay in a core's
# L2 cache, 2.5x faster than chunks 8x larger.
_CHUNK_CELLS = 65_536
# A condition on several plates: a plate's every choice of its wells is scored up front, and
# random relabellings look them up, while choices x wells x features stays under this (32 MB).
_TABLE_CELLS = 1 << 22
# Random relabellings stop at this many as good as the observed (Besag-Clifford): p known
# to about +-20 %, which is plenty far from significance.
_STOP_AFTER = 20

ACTIVITY_COLUMNS = ["condition", "compound", "dose", "n_profiles", "map", "pvalue", "padj",
                    "retrieved", "pvalue_copairs", "n_null", "note"]
CONSISTENCY_COLUMNS = ["moa", "n_compounds", "n_profiles", "map", "pvalue", "padj",
                       "retrieved", "pvalue_copairs"]
ENRICHMENT_COLUMNS = ["contrast", "moa_hypothesis", "n_neighbors_in_class",
                      "n_neighbors_annotated", "moa_hypothesis_pvalue", "moa_hypothesis_padj"]


@dataclass
class ConsensusResult:
    """MODZ consensus signatures of a screen's conditions (CMap level 5).

    Attributes
    ----------
    signatures
        Genes x conditions: the weighted mean of each condition's well z-scores.
    weights
        Per well (indexed by well), the MODZ weight; the weights of a condition sum to 1.
    quality
        Indexed by condition: ``n_wells``, ``replicate_correlation`` (cc_q75),
        ``signature_strength`` (ss_ngene) and ``tas``.
    """

    signatures: pd.DataFrame
    weights: pd.Series
    quality: pd.DataFrame


def _features_in(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """The ``features`` in ``frame`` (order kept, once each); none is an error."""
    used = [g for g in dict.fromkeys(features) if g in frame.index]
    if not used:
        raise ValueError(f"none of the {len(features)} feature genes is in the matrix: the "
                         "measures need at least one (see feature_genes)")
    return used


def robust_z(expression: pd.DataFrame, sheet: pd.DataFrame, *,
             min_mad: float = MIN_MAD) -> pd.DataFrame:
    """Per-well signatures as robust z-scores against the plate's control wells (CMap level 4).

    ``(x - median of the plate's control wells) / (1.4826 * MAD of the control wells)`` per
    gene, the MAD floored at ``min_mad`` as cmapPy's ``robust_zscore`` does (the floor is on
    the MAD itself, before the 1.4826 that makes it comparable to an sd).

    ``expression`` is genes x wells on a log2-like scale (VST); ``sheet`` the plate map
    indexed by well with ``plate`` and ``role``. Returns genes x wells, every well of
    ``expression``; ``ValueError`` for wells missing from ``sheet`` and for plates without
    control wells in ``expression``.
    """
    wells = expression.columns
    missing = wells.difference(sheet.index)
    if len(missing):
        raise ValueError(f"{len(missing)} well(s) of the expression matrix are not in the "
                         f"plate map, e.g. {', '.join(map(str, missing[:5]))}")
    plates = sheet.loc[wells, "plate"].to_numpy()
    is_control = (sheet.loc[wells, "role"] == "control").to_numpy()
    x = expression.to_numpy(dtype=float)
    z = np.empty_like(x)
    for plate in pd.unique(plates):
        on_plate = plates == plate
        controls = x[:, on_plate & is_control]
        if controls.shape[1] == 0:
            raise ValueError(f"plate {plate!r} has no control wells: its wells have no "
                             "reference for robust z-scores")
        median = np.median(controls, axis=1, keepdims=True)
        mad = np.median(np.abs(controls - median), axis=1, keepdims=True)
        z[:, on_plate] = (x[:, on_plate] - median) / (1.4826 * np.maximum(mad, min_mad))
    return pd.DataFrame(z, index=expression.index, columns=wells)


def feature_genes(expression: pd.DataFrame, n: int = N_FEATURES,
                  plates: pd.Series | None = None) -> list[str]:
    """The ``n`` genes with the largest variance across wells (ties in matrix order),
    constant genes left out; with ``plates`` (plate per well), the variance of each gene
    after removing each plate's median, so plate effects do not pass for responses (on two
    replicate plates this raised the retrieved share of active conditions from 0.63 to
    0.88; one plate is unchanged).

    Label-free on purpose: choosing genes by the conditions' own significance would select
    each condition's noise along with its signal, inflating its signature strength,
    replicate agreement and activity (a circular analysis); variance across all wells picks
    the genes any strong response moves without knowing which wells are which.
    """
    if plates is not None and plates.nunique() > 1:
        plates = plates.reindex(expression.columns)
        expression = expression.copy()
        for _, wells in plates.groupby(plates):
            block = expression[wells.index]
            expression[wells.index] = block.sub(block.median(axis=1), axis=0)
    x = expression.to_numpy(dtype=float)
    variance = x.var(axis=1)
    variable = np.flatnonzero(x.max(axis=1) > x.min(axis=1))
    order = variable[np.argsort(-variance[variable], kind="stable")]
    return expression.index[order[:n]].tolist()


def _groups_by_size(labels: np.ndarray) -> tuple[pd.Index, list[tuple[np.ndarray, np.ndarray]]]:
    """Conditions in order of first appearance and, per replicate count, the positions of
    those conditions and the (conditions x count) matrix of their well positions."""
    codes, names = pd.factorize(labels)
    by_condition = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    return names, [(rows, by_condition[starts[rows][:, None] + np.arange(size)])
                   for size in np.unique(sizes) for rows in [np.flatnonzero(sizes == size)]]


def consensus_signatures(z: pd.DataFrame, conditions: pd.Series,
                         features: list[str]) -> ConsensusResult:
    """MODZ consensus signature per condition with CMap's quality measures.

    Wells are compared by Spearman correlation over ``features``; a well's raw weight is
    its mean correlation with the condition's other wells, negative correlations counted
    as 0 and the mean floored at ``MIN_WEIGHT`` (cmapPy ``agg_wt_avg.calculate_weights``);
    weights are normalised to sum 1 and the consensus is the weighted sum of the wells' z
    over all genes. A single well gets weight 1.

    Parameters
    ----------
    z
        Genes x wells (:func:`robust_z`).
    conditions
        Condition per well (indexed by well); wells with a missing condition are skipped.
    features
        Genes the correlations and the signature strength are computed over.

    Returns
    -------
    :class:`ConsensusResult`; ``quality`` holds n_wells, replicate_correlation (75th
    percentile of the pairwise correlations, CMap's cc_q75; NaN for one well),
    signature_strength (feature genes with |consensus z| >= ``STRENGTH_Z``, ss_ngene) and
    tas (sqrt(ss * max(cc_q75, 0) / n features), NaN without cc_q75).
    """
    labels = conditions.dropna()
    missing = labels.index.difference(z.columns)
    if len(missing):
        raise ValueError(f"{len(missing)} well(s) have no z-scores, e.g. "
                         f"{', '.join(map(str, missing[:5]))}")
    used = _features_in(z, features)
    wells = labels.index
    values = z[wells].to_numpy(dtype=float)
    # Spearman = Pearson of ranks: rank each well over the features once, scale to unit
    # vectors, and each condition's correlation matrix is one small matrix product.
    ranks = rankdata(z.loc[used, wells].to_numpy(dtype=float), axis=0)
    ranks -= ranks.mean(axis=0)
    norms = np.linalg.norm(ranks, axis=0)
    units = np.divide(ranks, norms, out=np.zeros_like(ranks), where=norms > 0)
    names, groups = _groups_by_size(labels.to_numpy())
    consensus = np.empty((len(z), len(names)))
    weights = np.ones(len(wells))
    cc_q75 = np.full(len(names), np.nan)
    n_wells = np.zeros(len(names), dtype=int)
    for rows, idx in groups:
        size = idx.shape[1]
        n_wells[rows] = size
        if size == 1:
            consensus[:, rows] = values[:, idx[:, 0]]
            continue
        r = np.einsum("fci,fcj->cij", units[:, idx], units[:, idx])
        off = ~np.eye(size, dtype=bool)
        raw = (np.clip(r, 0, None) * off).sum(axis=2) / (size - 1)
        w = np.maximum(raw, MIN_WEIGHT)
        w /= w.sum(axis=1, keepdims=True)
        weights[idx] = w
        consensus[:, rows] = np.einsum("gci,ci->gc", values[:, idx], w)
        upper = r[:, *np.triu_indices(size, k=1)]
        cc_q75[rows] = np.percentile(upper, 75, axis=1)
    signatures = pd.DataFrame(consensus, index=z.index, columns=names)
    strength = (signatures.loc[used].abs() >= STRENGTH_Z).sum(axis=0).to_numpy()
    tas = np.sqrt(strength * np.maximum(cc_q75, 0) / len(used))
    quality = pd.DataFrame({"n_wells": n_wells, "replicate_correlation": cc_q75,
                            "signature_strength": strength, "tas": tas},
                           index=pd.Index(names, name="condition"))
    return ConsensusResult(signatures=signatures, weights=pd.Series(weights, index=wells),
                           quality=quality)


def _split_ranks(rows: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chosen wells' cosines with the other chosen wells of their pool (labellings x k x
    k - 1, descending) and with its other wells (labellings x k x pool - k). ``rows`` holds
    the chosen wells' cosines with the pool (labellings x k x pool), ``chosen`` their
    positions (labellings x k)."""
    k = chosen.shape[1]
    member = np.zeros((len(rows), rows.shape[2]), dtype=bool)
    np.put_along_axis(member, chosen, True, axis=1)
    others = np.argsort(member, axis=1, kind="stable")[:, :rows.shape[2] - k]
    negatives = np.take_along_axis(rows, others[:, None, :], axis=2)
    among = np.take_along_axis(rows, chosen[:, None, :], axis=2)
    among[:, np.arange(k), np.arange(k)] = -np.inf
    return -np.sort(-among, axis=2)[:, :, :k - 1], negatives


def _ap_sums(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Per labelling, the sum of the queries' average precision (ties rank the positive
    first, as copairs does) and the sum of their cosines with their positives (the
    tie-breaker); ``positives`` and ``negatives`` hold each query's cosines with its positives
    and negatives (labellings x queries x wells). Returns (labellings x 2)."""
    positives = -np.sort(-positives, axis=2)
    above = (negatives[:, :, None, :] > positives[..., None]).sum(axis=3)
    hits = np.arange(1, positives.shape[2] + 1)
    ap = (hits / (hits + above)).mean(axis=2).sum(axis=1)
    return np.column_stack([ap, positives.sum(axis=(1, 2))])


def _ap_and_similarity_sums(rows: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per labelling of one pool, :func:`_ap_sums` of the chosen wells, each querying the
    pool: positives = the other chosen wells, negatives = the rest (rows and chosen as in
    :func:`_split_ranks`)."""
    return _ap_sums(*_split_ranks(rows, chosen))


def _recentred_cosines(pool: np.ndarray, labellings: np.ndarray
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of relabellings of one plate's pool (condition wells and controls, wells x
    features), each re-centred on the median of its own pseudo-controls as :func:`robust_z`
    would have centred it had those been the controls: yields the chunk's labellings
    (chunk x k), centres (chunk x features) and the chosen wells' cosines with the pool
    (chunk x k x pool).

    The j-th smallest value left after removing the chosen wells sits at sorted position
    j + m, m = the number of offsets o in 0..k with more than o chosen wells ranked at or
    below j + o; those counts are sums of the chosen wells' rank indicators, so no
    per-labelling sort is needed."""
    n_pool, n_feat = pool.shape
    k = labellings.shape[1]
    n_ref = n_pool - k
    order = np.argsort(pool, axis=0, kind="stable")
    sorted_pool = np.take_along_axis(pool, order, axis=0)
    rank = np.empty((n_pool, n_feat), dtype=np.int32)
    np.put_along_axis(rank, order, np.arange(n_pool, dtype=np.int32)[:, None], axis=0)
    middle = [n_ref // 2] if n_ref % 2 else [n_ref // 2 - 1, n_ref // 2]
    thresholds = np.arange(middle[0], middle[-1] + k)
    below = (rank[None] <= thresholds[:, None, None]).astype(np.int8)
    # per middle position j, the candidates sorted[j .. j + k] gene by gene (contiguous)
    windows = [sorted_pool[j:j + k + 1].T.ravel() for j in middle]
    window_start = np.arange(n_feat) * (k + 1)
    gram = pool @ pool.T
    chunk = max(16, _CHUNK_CELLS // n_feat)
    for start in range(0, len(labellings), chunk):
        chosen = labellings[start:start + chunk]
        counts = []  # per threshold, the chosen wells ranked at or below it
        for indicator in below:
            counts.append(indicator[chosen[:, 0]])
            for i in range(1, k):
                counts[-1] += indicator[chosen[:, i]]
        centre = np.zeros((len(chosen), n_feat))
        for offset, window in enumerate(windows):
            shift = np.zeros((len(chosen), n_feat), dtype=np.int8)
            for o in range(k):  # counts[offset + k] > k never holds
                shift += counts[offset + o] > o
            centre += window.take(window_start + shift)
        centre /= len(middle)
        # Cosines of the re-centred chosen wells with the pool, from the Gram matrix:
        # <a - c, b - c> = <a, b> - <a, c> - <b, c> + <c, c>.
        projection = centre @ pool.T
        square = np.einsum("lf,lf->l", centre, centre)[:, None]
        norm = np.sqrt(np.maximum(np.diag(gram) - 2 * projection + square, 1e-300))
        chosen_projection = np.take_along_axis(projection, chosen, axis=1)
        inner = (gram[chosen] - chosen_projection[:, :, None] - projection[:, None, :]
                 + square[:, :, None])
        cosine = inner / np.take_along_axis(norm, chosen, axis=1)[:, :, None] / norm[:, None, :]
        yield chosen, centre, cosine


def _relabelled_sums(pool: np.ndarray, labellings: np.ndarray) -> np.ndarray:
    """:func:`_ap_and_similarity_sums` of relabellings of one plate's pool, each re-centred on
    its pseudo-controls (:func:`_recentred_cosines`); returns (labellings x 2)."""
    sums = np.empty((len(labellings), 2))
    start = 0
    for chosen, _, cosine in _recentred_cosines(pool, labellings):
        sums[start:start + len(chosen)] = _ap_and_similarity_sums(cosine, chosen)
        start += len(chosen)
    return sums


def _plate_terms(pool: np.ndarray, labellings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per relabelling of one plate's pool (:func:`_recentred_cosines`), the chosen wells'
    cosines with the pool (labellings x k x pool) and their re-centred profiles as unit
    vectors (labellings x k x features), for their cosines with other plates' wells."""
    cosines, units = [], []
    for chosen, centre, cosine in _recentred_cosines(pool, labellings):
        cosines.append(cosine)
        centred = pool[chosen] - centre[:, None, :]
        norm = np.sqrt(np.maximum(np.einsum("lkf,lkf->lk", centred, centred), 1e-300))
        units.append(centred / norm[..., None])
    return np.concatenate(cosines), np.concatenate(units)


def _joint_sums(terms: list[tuple[np.ndarray, np.ndarray]], index: np.ndarray,
                cross: Callable[[int, int, np.ndarray], np.ndarray]) -> np.ndarray:
    """:func:`_ap_sums` of joint relabellings of several plates: every chosen well queries its
    positives, the other chosen wells of all the plates, among its negatives, the other
    wells of its own plate's pool. ``terms`` holds per plate its labellings (labellings x
    k_p) and their cosines with the pool (:func:`_plate_terms`); a row of ``index`` is a
    joint relabelling, the row of each plate's labellings it takes; ``cross(p, q, index)``
    gives the cosines between the chosen wells of plates p < q (joint x k_p x k_q)."""
    between = {(p, q): cross(p, q, index) for p, q in combinations(range(len(terms)), 2)}
    sums = np.zeros((len(index), 2))
    for p, (labellings, cosines) in enumerate(terms):
        own, negatives = _split_ranks(cosines[index[:, p]], labellings[index[:, p]])
        others = [between[p, q] if p < q else between[q, p].transpose(0, 2, 1)
                  for q in range(len(terms)) if q != p]
        sums += _ap_sums(np.concatenate([own, *others], axis=2), negatives)
    return sums


def _relabelling_pvalue(pools: list[tuple[np.ndarray, int]], null_size: int,
                        rng: np.random.Generator) -> tuple[float, int]:
    """Permutation p-value of a condition's mAP and the number of relabellings behind it.

    ``pools`` holds per plate the pool (the condition's wells on the plate first, then the
    plate's controls) and the condition's well count there. A relabelling chooses, on every
    plate, that many wells of its pool (stratified: a well stays on its plate), re-centres
    each plate on its remaining wells and scores the same mAP: every chosen well queries
    the chosen wells of all plates among its own plate's other wells. At most ``null_size``
    joint relabellings (the product over plates of the ways to choose): all are scored,
    p = #(at least as good as observed) / #ways (the observed one among them). Otherwise
    random ones (independent per plate), stopped at the ``_STOP_AFTER``-th as good as
    observed (Besag & Clifford 1991: p = that count / draws; an inactive condition is
    settled in a few hundred draws), else p = (1 + count) / (1 + null_size). Relabellings
    tying the observed mAP are ordered by the mean cosine among the chosen wells: with
    duplicates, mAP = 1 (two wells each other's nearest) happens for a few percent of
    random pairs, which would otherwise floor p there.
    """
    def as_good(sums: np.ndarray, observed: np.ndarray) -> np.ndarray:
        # AP sums are ratios of small integers: the tolerance keeps float noise from
        # breaking the tie of a relabelling with itself.
        tie = np.abs(sums[:, 0] - observed[0]) <= 1e-9
        return (sums[:, 0] > observed[0]) | (tie & (sums[:, 1] >= observed[1] - 1e-9))

    ways = [comb(len(pool), k) for pool, k in pools]
    n_ways = prod(ways)
    if len(pools) == 1:
        pool, k = pools[0]
        if n_ways <= null_size:  # the first combination is the observed one
            sums = _relabelled_sums(pool, np.array(list(combinations(range(len(pool)), k))))
            return float(as_good(sums, sums[0]).sum() / n_ways), n_ways

        def score(draws: list[np.ndarray]) -> np.ndarray:
            return _relabelled_sums(pool, draws[0])
    else:
        score = _joint_scorer(pools, ways, enumerate_all=n_ways <= null_size)
        if n_ways <= null_size:  # every joint relabelling, the observed one first
            grid = np.indices(ways).reshape(len(ways), -1).T
            chunk = max(16, _CHUNK_CELLS // sum(k * len(pool) for pool, k in pools))
            sums = np.concatenate([score(grid[s:s + chunk], indexed=True)
                                   for s in range(0, n_ways, chunk)])
            return float(as_good(sums, sums[0]).sum() / n_ways), n_ways

    observed = score([np.arange(k)[None] for _, k in pools])[0]
    count = drawn = 0
    while drawn < null_size:
        size = min(500, null_size - drawn)  # a stopped inactive condition needs ~100 draws
        sums = score([np.argpartition(rng.random((size, len(pool))), k, axis=1)[:, :k]
                      for pool, k in pools])
        hits = np.flatnonzero(as_good(sums, observed))
        if count + len(hits) >= _STOP_AFTER:
            stopped = drawn + hits[_STOP_AFTER - count - 1] + 1
            return _STOP_AFTER / stopped, int(stopped)
        count, drawn = count + len(hits), drawn + size
    return (1 + count) / (1 + null_size), null_size


def _joint_scorer(pools: list[tuple[np.ndarray, int]], ways: list[int], enumerate_all: bool
                  ) -> Callable[..., np.ndarray]:
    """The scorer of joint relabellings of several plates (:func:`_joint_sums`): called with
    per plate the chosen wells of each relabelling (relabellings x k_p), or with
    ``indexed=True`` and a (relabellings x plates) array of combination numbers (their
    order in ``itertools.combinations``). A plate with few enough ways to choose (all of
    them when ``enumerate_all``) has every choice scored once, up front, and the draws look
    them up; the others are scored draw by draw."""
    n_feat = pools[0][0].shape[1]
    tables = []
    for (pool, k), n in zip(pools, ways):
        if enumerate_all or n * k * n_feat <= _TABLE_CELLS:
            every = np.array(list(combinations(range(len(pool)), k)))
            binomials = np.array([[comb(len(pool) - 1 - j, k - i) for j in range(len(pool))]
                                  for i in range(k)])
            tables.append((every, *_plate_terms(pool, every), binomials))
        else:
            tables.append(None)
    # cosines between the wells of two tabled plates' choices, all pairs at once
    products = {(p, q): np.tensordot(tables[p][2], tables[q][2], axes=(2, 2))
                for p, q in combinations(range(len(pools)), 2)
                if tables[p] is not None and tables[q] is not None
                and ways[p] * ways[q] * pools[p][1] * pools[q][1] <= _TABLE_CELLS}

    def score(draws, indexed: bool = False) -> np.ndarray:
        terms, units, index = [], [], []
        for p, ((pool, k), table) in enumerate(zip(pools, tables)):
            if table is None:
                cosines, unit = _plate_terms(pool, draws[p])
                terms.append((draws[p], cosines))
                units.append(unit)
                index.append(np.arange(len(draws[p])))
                continue
            terms.append(table[:2])
            units.append(table[2])
            if indexed:
                index.append(draws[:, p])
            else:  # lexicographic rank: C(n, k) - 1 - sum_i C(n - 1 - c_i, k - i)
                chosen = np.sort(draws[p], axis=1)
                index.append(ways[p] - 1 - table[3][np.arange(k), chosen].sum(axis=1))
        index = np.column_stack(index)

        def cross(p: int, q: int, rows: np.ndarray) -> np.ndarray:
            if (p, q) in products:
                return products[p, q][rows[:, p], :, rows[:, q], :]
            return units[p][rows[:, p]] @ units[q][rows[:, q]].transpose(0, 2, 1)
        return _joint_sums(terms, index, cross)
    return score


def _copairs_maps(meta: pd.DataFrame, profiles: np.ndarray, pairs: dict, sameby: str,
                  null_size: int, seed: int) -> pd.DataFrame:
    """copairs' AP per query and mAP per ``sameby`` group (queries without positives left
    out), indexed by group: ``map``, ``pvalue_copairs``."""
    ap = average_precision(meta, profiles, **pairs, progress_bar=False)
    ap = ap[ap["n_pos_pairs"] > 0]
    with tempfile.TemporaryDirectory() as cache:  # copairs would cache in ~/.copairs
        maps = mean_average_precision(ap, [sameby], null_size=null_size, threshold=ALPHA,
                                      seed=seed, progress_bar=False, cache_dir=cache)
    return maps.set_index(sameby).rename(columns={"mean_average_precision": "map",
                                                  "p_value": "pvalue_copairs"})[
        ["map", "pvalue_copairs"]].astype(float)


def _activity_profiles(z: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """One plate's wells x features, centred on the control median (a no-op on robust_z
    output) and scaled per feature by the robust spread (1.4826 MAD; sd, then 1, where it
    is 0) of all the plate's control and treated wells.

    The scale must not depend on which wells are the controls, or the relabelling test is
    not exact: z's own scale, the controls' MAD, is tight by construction on the very wells
    serving as negatives. The plate-wide MAD, barely moved by a minority of responding
    wells, is the same for every relabelling, and cancels z's scale (and its floor): the
    profiles are (x - control median) / plate spread of the expression itself."""
    spread = 1.4826 * np.median(np.abs(z - np.median(z, axis=0)), axis=0)
    spread = np.where(spread > 0, spread, z.std(axis=0))
    spread = np.where(spread > 0, spread, 1.0)
    return (z - np.median(z[is_control], axis=0)) / spread


def activity_map(z: pd.DataFrame, sheet: pd.DataFrame, features: list[str], *,
                 null_size: int = NULL_SIZE, seed: int = 0,
                 alpha: float = ALPHA) -> pd.DataFrame:
    """Phenotypic activity per condition: mAP of retrieving its replicate wells, on any plate,
    among the control wells of the query's plate (copairs; the JUMP recipe), with an exact
    p-value.

    Profiles: the wells' z over ``features``, per plate centred on the control median and
    scaled by the robust spread of all the plate's wells (:func:`_activity_profiles`),
    compared by cosine. Every treated well queries: positives are the other wells of its
    condition on any plate, negatives the controls of its own plate (copairs' recipe: a
    reference index per control, ``plate`` in ``neg_sameby`` only, JUMP's
    ``neg_sameby = plate``).

    Multi-plate screens: normalising each plate to its own controls (robust z, then the
    centring above) puts every well on one reference, its plate's vehicle, so replicates on
    different plates are compared directly, as CMap and JUMP do; the replicate-plates layout
    (every condition once on each plate) gets its activity call that way. A query's
    negatives stay on its plate: its replicates must outrank the very controls the query
    was centred on, not another plate's controls, which a plate effect left over by the
    normalisation would set apart from it. A condition with a single well in all has nothing
    to retrieve (NaN, reason in ``note``). A single-plate screen is unchanged by this.

    ``pvalue``: copairs' null (``pvalue_copairs``, kept for comparison) does not hold level
    here (``bench/moa.py``: 0.40 of inactive duplicates on one plate at p < 0.05). It scores
    each query's positives at random ranks, but a condition's wells share the noise of the
    control median they were centred on while each control is part of it, so inactive
    replicates resemble each other more than the controls (replicates on different plates,
    centred on different controls, don't, and it is conservative there: 0.025); and its
    strict ``>`` gives mAP = 1 a p of 1 / (null_size + 1). Instead, on each plate, the
    condition's wells there and the plate's controls are pooled; every joint choice of the
    condition's wells among each plate's pool (stratified: a well stays on its plate;
    random ones, up to ``null_size``, when there are more) is re-centred plate by plate on
    the median of the rest, as robust_z would have, and scored by the same mAP
    (:func:`_relabelling_pvalue`). If the condition is inactive (on every plate its wells
    exchangeable with the plate's controls) the observed choice is one of them, so the test
    is exact. Its resolution is 1 / the product over plates of C(wells + controls, wells):
    1/325 for duplicates on one plate with 24 controls, so BH over 180 duplicate conditions
    passes only once a dozen of them reach it; 1/625 for one well on each of 2 plates (half
    a dozen); quadruplicates on one plate: 1/20,475, one well on each of 3 plates: 1/15,625.

    Returns
    -------
    One row per condition of the ``sample`` wells in ``z`` (``ACTIVITY_COLUMNS``): n_profiles
    (its wells), map (copairs' mean of its wells' AP), pvalue, padj (BH across conditions),
    retrieved (padj < ``alpha``), pvalue_copairs, n_null (relabellings scored), note (why
    there is no map; None otherwise).
    """
    used = _features_in(z, features)
    usable = (sheet["role"] == "control") | (sheet["role"] == "sample") & sheet["condition"].notna()
    wells = sheet.index[sheet.index.isin(z.columns) & usable]
    meta = sheet.loc[wells, ["plate", "role", "condition", "compound", "dose"]].copy()
    profiles = z.loc[used, wells].to_numpy(dtype=float).T
    is_control = (meta["role"] == "control").to_numpy()
    plates = meta["plate"].to_numpy()
    for plate in pd.unique(plates):
        on_plate = plates == plate
        if not (on_plate & is_control).any():
            raise ValueError(f"plate {plate!r} has no control wells: its treated wells have "
                             "no negatives")
        profiles[on_plate] = _activity_profiles(profiles[on_plate], is_control[on_plate])
    treated = meta[~is_control]
    table = treated.groupby("condition", sort=False).agg(
        compound=("compound", "first"), dose=("dose", "first"), n_profiles=("plate", "size"))
    queried = table.index[table["n_profiles"] >= 2]
    table["note"] = np.where(table["n_profiles"] >= 2, None, "one well: no replicate to retrieve")
    table["map"] = table["pvalue_copairs"] = table["pvalue"] = np.nan
    table["n_null"] = 0
    if len(queried):
        # copairs' activity recipe: a control gets a reference index of its own (never a
        # positive of another control), treated wells share -1; the prefixes keep a
        # compound named like the vehicle from pairing with the controls. Positives: same
        # condition on any plate; negatives: the query's plate (JUMP's neg_sameby plate).
        copairs_meta = pd.DataFrame({
            "plate": meta["plate"].astype(str).to_numpy(),
            "condition": np.where(is_control, "control:", "sample:" + meta["condition"]
                                  .astype(str).to_numpy()),
            "ref": np.where(is_control, np.arange(len(meta)), -1)})
        maps = _copairs_maps(copairs_meta, profiles, dict(
            pos_sameby=["condition", "ref"], pos_diffby=[], neg_sameby=["plate"],
            neg_diffby=["condition", "ref"]), "condition", null_size, seed)
        maps.index = maps.index.str.removeprefix("sample:")
        table.loc[maps.index, ["map", "pvalue_copairs"]] = maps
        controls_of = {p: np.flatnonzero((plates == p) & is_control) for p in pd.unique(plates)}
        treated_at = np.flatnonzero(~is_control)
        by_plate = treated.groupby(["condition", "plate"], sort=False)
        wells_of = {key: treated_at[rows] for key, rows in by_plate.indices.items()}
        plates_of = treated[["condition", "plate"]].drop_duplicates().groupby(
            "condition", sort=False)["plate"].agg(list)
        rngs = np.random.default_rng(seed).spawn(len(table))
        tests = np.column_stack([table["pvalue"], table["n_null"]])
        # One thread: the products are small and BLAS threads only add synchronisation
        # (5x slower on a busy 2-core machine).
        with threadpool_limits(1, user_api="blas"):
            for i in np.flatnonzero(table.index.isin(maps.index)):
                condition = table.index[i]
                pools = [(profiles[np.r_[wells_of[condition, plate], controls_of[plate]]],
                          len(wells_of[condition, plate])) for plate in plates_of[condition]]
                tests[i] = _relabelling_pvalue(pools, null_size, rngs[i])
        table["pvalue"], table["n_null"] = tests[:, 0], tests[:, 1]
    table["padj"] = bh_adjust(table["pvalue"])
    table["retrieved"] = table["padj"] < alpha
    table["n_null"] = table["n_null"].astype(int)
    return table.rename_axis("condition").reset_index()[ACTIVITY_COLUMNS]


def _class_permutation_test(profiles: np.ndarray, compounds: np.ndarray, classes: np.ndarray,
                            tested: list[str], null_size: int,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Observed mAP of each ``tested`` class and its p-value when the classes are shuffled
    among the compounds (each compound keeps all its doses and one class, its first's).

    Under a shuffle a class's compounds are a random subset of its size, and its mAP needs
    only the ranks its members give each other: every condition ranks the conditions of
    the other compounds by cosine once, and a draw reads a members x members block of those
    ranks. p = (1 + #draws with mAP >= observed) / (1 + null_size)."""
    unit = profiles / np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-300)
    codes, _ = pd.factorize(compounds)
    n = len(codes)
    valid = codes[:, None] != codes[None, :]
    order = np.argsort(np.where(valid, -(unit @ unit.T), np.inf), axis=1, kind="stable")
    rank = np.empty((n + 1, n + 1))
    np.put_along_axis(rank[:n, :n], order, np.arange(1.0, n + 1), axis=1)
    rank[:n, :n][~valid] = np.inf
    rank[n], rank[:, n] = np.inf, np.inf  # position n pads compounds with fewer doses
    doses = np.bincount(codes)
    conditions_of = np.full((len(doses), doses.max()), n)
    conditions_of[codes, pd.Series(codes).groupby(codes).cumcount().to_numpy()] = np.arange(n)
    class_of = pd.Series(classes).groupby(codes).first().to_numpy()

    def class_map(members: np.ndarray) -> np.ndarray:  # (draws x compounds) -> mAP per draw
        wells = conditions_of[members].reshape(len(members), -1)
        ranks = np.sort(rank[wells[:, :, None], wells[:, None, :]], axis=2)
        n_pos = np.isfinite(ranks).sum(axis=2)
        with np.errstate(invalid="ignore"):
            ap = (np.arange(1, ranks.shape[2] + 1) / ranks).sum(axis=2) / n_pos
        return np.nansum(ap, axis=1) / (wells < n).sum(axis=1)

    observed, pvalues = np.empty(len(tested)), np.empty(len(tested))
    for i, moa in enumerate(tested):
        own = np.flatnonzero(class_of == moa)
        observed[i] = class_map(own[None])[0]
        at_least, per_chunk = 0, max(1, 2_000_000 // (len(own) * doses.max()) ** 2)
        for start in range(0, null_size, per_chunk):
            draws = rng.random((min(per_chunk, null_size - start), len(doses)))
            members = np.argpartition(draws, len(own) - 1, axis=1)[:, :len(own)]
            at_least += int((class_map(members) >= observed[i] - 1e-9).sum())
        pvalues[i] = (1 + at_least) / (1 + null_size)
    return observed, pvalues


def consistency_map(signatures: pd.DataFrame, meta: pd.DataFrame, features: list[str], *,
                    null_size: int = NULL_SIZE, seed: int = 0,
                    alpha: float = ALPHA) -> pd.DataFrame:
    """Consistency per MoA class: mAP of retrieving the class's other compounds (copairs; the
    JUMP recipe), BH across classes.

    Profiles are the consensus signatures over ``features`` (cosine similarity). Each
    annotated condition queries all others: positives are conditions of the same class and
    another compound, negatives conditions of another class; other doses of the same
    compound are neither (they would make a class look consistent by itself). Conditions
    without a class are neither queries nor references. Classes with fewer than 2 compounds
    have nothing to retrieve and are left out of the table; their conditions stay as
    negatives of the other classes (a decoy of another mechanism). As JUMP does, pass the
    active conditions (:func:`activity_map`): inactive doses only dilute a class.

    ``pvalue`` shuffles the classes among the compounds (exact under "the class says nothing
    about the signatures"). copairs' p (``pvalue_copairs``) draws the positives' ranks
    independently, which the doses of one compound (alike by construction) are not, and
    its strict ``>`` gives mAP = 1 a p of 1 / (null_size + 1) even where two compounds are
    each other's nearest by chance: 0.12 of random classes of 2 compounds x 3 doses at
    p < 0.05. With few compounds the shuffle test's resolution is coarse: a perfect class of
    3 among 9 compounds gets p ~ 3/84 (any of the 3 planted classes is as perfect).

    Parameters
    ----------
    signatures
        Genes x conditions (:class:`ConsensusResult` ``signatures``).
    meta
        Indexed by condition, with ``compound`` and ``moa`` (NaN = unannotated).
    features
        Genes the similarity is computed over.

    Returns
    -------
    One row per class with at least 2 compounds (``CONSISTENCY_COLUMNS``); n_profiles counts
    its conditions.
    """
    used = _features_in(signatures, features)
    annotated = meta.reindex(signatures.columns)[["compound", "moa"]].dropna().astype(str)
    sizes = annotated.groupby("moa").agg(n_compounds=("compound", "nunique"),
                                         n_profiles=("compound", "size"))
    sizes = sizes[sizes["n_compounds"] >= 2]
    if sizes.empty or annotated["moa"].nunique() < 2:
        return pd.DataFrame(columns=CONSISTENCY_COLUMNS)
    profiles = signatures.loc[used, annotated.index].to_numpy(dtype=float).T
    maps = _copairs_maps(annotated.reset_index(drop=True), profiles, dict(
        pos_sameby=["moa"], pos_diffby=["compound"], neg_sameby=[], neg_diffby=["moa"]),
        "moa", null_size, seed)
    table = sizes.join(maps, how="inner")
    _, table["pvalue"] = _class_permutation_test(
        profiles, annotated["compound"].to_numpy(), annotated["moa"].to_numpy(),
        list(table.index), null_size, np.random.default_rng(seed))
    table["padj"] = bh_adjust(table["pvalue"])
    table["retrieved"] = table["padj"] < alpha
    return table.rename_axis("moa").reset_index()[CONSISTENCY_COLUMNS]


def moa_enrichment(neighbors: pd.DataFrame, moa_of: pd.Series) -> pd.DataFrame:
    """MoA hypothesis per condition from the classes of its nearest other compounds.

    For each condition and each class among its annotated neighbours, the hypergeometric
    upper tail P(X >= hits): population = the annotated conditions of other compounds that
    appear in ``neighbors`` (those could have been its neighbours; conditions absent from
    the table, e.g. inactive ones left out of the similarity, could not), successes = those
    of the class, draws = its annotated neighbours. The reported class has the smallest p
    (ties: more hits, then name); BH across conditions.

    Parameters
    ----------
    neighbors
        Long table of :func:`dge_platform.screen.similarity.nearest_neighbors` (contrast,
        compound, neighbor_contrast, neighbor_compound, ...).
    moa_of
        Class per condition (contrast); NaN = unannotated.

    Returns
    -------
    One row per condition of ``neighbors`` (``ENRICHMENT_COLUMNS``); no annotated
    neighbour: NaN hypothesis and p.
    """
    classes = moa_of.dropna().astype(str)
    compound_of = pd.concat([
        pd.Series(neighbors["compound"].to_numpy(), index=neighbors["contrast"].to_numpy()),
        pd.Series(neighbors["neighbor_compound"].to_numpy(),
                  index=neighbors["neighbor_contrast"].to_numpy())])
    compound_of = compound_of[~compound_of.index.duplicated()]
    known = pd.DataFrame({"compound": compound_of, "moa": classes.reindex(compound_of.index)})
    known = known.dropna(subset=["moa"])
    hits = neighbors.assign(moa=classes.reindex(neighbors["neighbor_contrast"]).to_numpy())
    per_class = hits.dropna(subset=["moa"]).groupby(["contrast", "compound", "moa"]).size()
    per_class = per_class.rename("x").reset_index()
    per_class["n"] = per_class.groupby("contrast")["x"].transform("sum")
    own = known["compound"].value_counts().reindex(per_class["compound"]).fillna(0)
    in_class = known["moa"].value_counts().reindex(per_class["moa"])
    own_in_class = known.value_counts(["compound", "moa"]).reindex(
        pd.MultiIndex.from_frame(per_class[["compound", "moa"]])).fillna(0)
    per_class["p"] = hypergeom.sf(per_class["x"] - 1, len(known) - own.to_numpy(),
                                  in_class.to_numpy() - own_in_class.to_numpy(), per_class["n"])
    best = per_class.sort_values(["p", "x", "moa"], ascending=[True, False, True], kind="stable")
    best = best.drop_duplicates("contrast").set_index("contrast")
    out = pd.DataFrame(index=pd.Index(pd.unique(neighbors["contrast"]), name="contrast"))
    out["moa_hypothesis"] = best["moa"]
    out["n_neighbors_in_class"] = best["x"].reindex(out.index).fillna(0).astype(int)
    out["n_neighbors_annotated"] = best["n"].reindex(out.index).fillna(0).astype(int)
    out["moa_hypothesis_pvalue"] = best["p"]
    out["moa_hypothesis_padj"] = bh_adjust(out["moa_hypothesis_pvalue"])
    return out.reset_index()[ENRICHMENT_COLUMNS]
