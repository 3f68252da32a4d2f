"""GSEA prerank (gene-set permutation, as GSEA and gseapy), vectorized with numba.

gseapy 1.3.1 needs ~450 s and 6.8 GB for 20,000 genes x 5,000 sets x 1,000 permutations;
this needs ~2 s and 0.3 GB with the same statistics (bench/enrichment.py). Two ideas make it
fast: an enrichment score is computed from the sorted hit positions only (the running sum
turns only at hits), and sets of equal size share one null distribution (5,000 GO sets have
~430 distinct sizes). Random streams derive from (seed, set size): results do not depend on
thread count or on the other sets, and the same seed gives the same result.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pandas as pd

from dge_platform._core.rng import splitmix64


@numba.njit(cache=True)
def _es_sorted(weights, pos, n):
    """ES of the hits at sorted positions ``pos``, index of the peak hit, and whether
    the ES is the positive extreme. O(k): the running sum only turns at hits."""
    k = pos.shape[0]
    nr = 0.0
    for i in range(k):
        nr += weights[pos[i]]
    inv_miss = 1.0 / (n - k)
    cum = 0.0
    top, bottom = -np.inf, np.inf
    itop, ibottom = 0, 0
    for i in range(k):
        misses = (pos[i] - i) * inv_miss
        lo = cum - misses                       # just before hit i
        cum += weights[pos[i]] / nr if nr > 0 else 1.0 / k
        hi = cum - misses                       # at hit i
        if lo < bottom:
            bottom, ibottom = lo, i
        if hi > top:
            top, itop = hi, i
    if top > -bottom:
        return top, itop, True
    return bottom, ibottom, False

@numba.njit(parallel=True, cache=True)
def _null_es(weights, sizes, order, nperm, seed):
    """nperm null ES per set size: random k-subsets (rejection sampling on a mark array,
    exact without replacement), one splitmix64 stream per (seed, k)."""
    n = weights.shape[0]
    out = np.empty((sizes.shape[0], nperm))
    for t in numba.prange(order.shape[0]):
        si = order[t]
        k = sizes[si]
        mark = np.zeros(n, np.uint8)
        pos = np.empty(k, np.int64)
        state = np.uint64(seed) * np.uint64(0x2545F4914F6CDD1D) + np.uint64(k)
        state, _ = splitmix64(state)
        for j in range(nperm):
            for i in range(k):
                while True:
                    state, z = splitmix64(state)
                    p = np.int64((z >> np.uint64(11)) * (1.0 / 9007199254740992.0) * n)
                    if mark[p] == 0:
                        break
                mark[p] = 1
                pos[i] = p
            pos.sort()
            for i in range(k):
                mark[pos[i]] = 0
            out[si, j] = _es_sorted(weights, pos, n)[0]
    return out

@numba.njit(parallel=True, cache=True)
def _observed_es(weights, indptr, positions):
    m = indptr.shape[0] - 1
    n = weights.shape[0]
    es = np.empty(m)
    peak = np.empty(m, np.int64)
    positive = np.empty(m, np.bool_)
    for s in numba.prange(m):
        e, i, up = _es_sorted(weights, positions[indptr[s]:indptr[s + 1]], n)
        es[s], peak[s], positive[s] = e, i, up
    return es, peak, positive


def prerank(ranking: pd.Series, sets: dict[str, list[str]], *, permutations: int = 1000,
                 seed: int = 0, weight: float = 1.0, min_size: int = 15,
                 max_size: int = 500) -> pd.DataFrame:
    """GSEA prerank of ``ranking`` (gene -> statistic) against ``sets``.

    Returns one row per set with ``min_size <= size <= max_size`` members in the ranking:
    term, size, es, nes, pvalue, fdr (GSEA FDR q-value) and lead_genes (comma-separated, in
    ranking order from the extreme end, as gseapy lists them). Ties in the statistic are
    ordered by gene name, so results are deterministic for a given seed.
    """
    ranking = ranking.dropna()
    if ranking.index.has_duplicates:
        raise ValueError("ranking has duplicate gene ids")
    order = np.lexsort((ranking.index.to_numpy(dtype=str), -ranking.to_numpy(dtype=float)))
    genes = ranking.index.to_numpy()[order]
    weights = np.abs(ranking.to_numpy(dtype=float)[order]) ** weight
    n = len(genes)
    where = {gene: i for i, gene in enumerate(genes)}

    terms, chunks = [], []
    for term, members in sets.items():
        pos = np.unique(np.fromiter((where[g] for g in members if g in where), np.int64))
        if min_size <= len(pos) <= max_size and len(pos) < n:
            terms.append(term)
            chunks.append(pos)
    columns = ["term", "size", "es", "nes", "pvalue", "fdr", "lead_genes"]
    if not terms:
        return pd.DataFrame(columns=columns)
    size = np.array([len(c) for c in chunks], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
    positions = np.concatenate(chunks).astype(np.int64)
    es, peak, positive = _observed_es(weights, indptr, positions)

    uniq, size_idx, counts = np.unique(size, return_inverse=True, return_counts=True)
    by_cost = np.argsort(uniq)[::-1]          # interleave large and small sizes over threads
    balance = np.concatenate([by_cost[0::2], by_cost[1::2]]).astype(np.int64)
    null = _null_es(weights, uniq, balance, int(permutations), int(seed) & (2**63 - 1))

    pos_null = np.where(null >= 0, null, np.nan)
    neg_null = np.where(null < 0, null, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # a size with no null of one sign
        pos_mean = np.nanmean(pos_null, axis=1)
        neg_mean = np.abs(np.nanmean(neg_null, axis=1))
    n_pos = np.sum(null >= 0, axis=1)
    n_neg = permutations - n_pos
    up = es >= 0
    scale = np.where(up, pos_mean[size_idx], neg_mean[size_idx])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, np.abs(es))   # gseapy fallback
    nes = np.where(scale > 0, es / np.where(scale > 0, scale, 1.0), 0.0)

    sorted_null = np.sort(null, axis=1)
    pvalue = np.empty(len(es))
    for u in range(len(uniq)):
        rows = np.flatnonzero(size_idx == u)
        row_up, row_dn = rows[up[rows]], rows[~up[rows]]
        ge = permutations - np.searchsorted(sorted_null[u], es[row_up], side="left")
        le = np.searchsorted(sorted_null[u], es[row_dn], side="right")
        pvalue[row_up] = ge / n_pos[u] if n_pos[u] else 1.0
        pvalue[row_dn] = le / n_neg[u] if n_neg[u] else 1.0

    # GSEA FDR q: (share of pooled null NES beyond NES) / (share of observed NES beyond NES),
    # within each sign; every set contributes its size's null, so weight a size by its count.
    with np.errstate(invalid="ignore", divide="ignore"):
        null_nes = np.where(null >= 0, null / pos_mean[:, None], null / neg_mean[:, None])
    flat = null_nes.ravel()
    flat_w = np.repeat(counts.astype(float), permutations)
    keep = np.isfinite(flat)
    flat, flat_w = flat[keep], flat_w[keep]
    o = np.argsort(flat, kind="mergesort")
    flat, cw = flat[o], np.concatenate([[0.0], np.cumsum(flat_w[o])])
    obs = np.sort(nes)
    zero_null, zero_obs = np.searchsorted(flat, 0.0, "left"), np.searchsorted(obs, 0.0, "left")
    null_beyond = np.where(up, cw[-1] - cw[np.searchsorted(flat, nes, "left")],
                           cw[np.searchsorted(flat, nes, "right")])
    null_side = np.where(up, cw[-1] - cw[zero_null], cw[zero_null])
    obs_beyond = np.where(up, len(obs) - np.searchsorted(obs, nes, "left"),
                          np.searchsorted(obs, nes, "right"))
    obs_side = np.where(up, len(obs) - zero_obs, zero_obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        fdr = np.minimum((null_beyond / null_side) / (obs_beyond / obs_side), 1.0)
    fdr = np.where(np.isfinite(fdr), fdr, 1.0)

    lead = []
    for s, pos in enumerate(chunks):
        edge = pos[: peak[s] + 1] if positive[s] else pos[peak[s]:][::-1]
        lead.append(",".join(genes[edge]))
    out = pd.DataFrame({"term": terms, "size": size, "es": es, "nes": nes, "pvalue": pvalue,
                        "fdr": fdr, "lead_genes": lead})
    return out.reindex(out["nes"].abs().sort_values(ascending=False).index).reset_index(drop=True)
