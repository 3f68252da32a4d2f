"""Connectivity search: which signatures of the catalog look like (or opposite to) a query
of up- and down-regulated genes, as in the Connectivity Map (Lamb et al., Science 2006).

Each signature (study_id, contrast, cell_type) ranks its tested genes by a result column
(the Wald statistic by default), most up first. The query's up genes and down genes get a
Kolmogorov-Smirnov enrichment score each, CMap 1.0's classic unweighted one: with the t
matched genes at ranks V(1) < ... < V(t) among n,

    a = max_j [ j/t - V(j)/n ],  b = max_j [ V(j)/n - (j-1)/t ],  ES = a if a > b else -b,

and the raw connectivity is ES_up - ES_down when the two have opposite signs, else 0 (the
query's up genes at the top and its down genes at the bottom give a positive score, the
reverse a negative one). As in CMap, scores are scaled by the largest positive and the
largest negative raw score of the catalog, so ``score`` lies in [-1, 1].

The unweighted KS is chosen over CMap 2's weighted one because it depends on ranks only:
the null distribution of random gene sets of the same sizes depends only on (n, t_up,
t_down), so signatures with the same numbers share one set of permutations (the idea of
:mod:`dge_platform.enrichment.gsea`), and studies with differently scaled statistics are comparable.

Genes are matched on the gene key of :mod:`dge_platform.cross_study.meta_analysis`
(upper-cased symbol,
Ensembl ids without version); a query may name genes by symbol in any case or by Ensembl
id, with or without version.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from dge_platform._core.rng import splitmix64
from dge_platform.cross_study.meta_analysis import (
    _Encoded,
    _flags,
    _floats,
    _values,
    normalize_gene,
)

PERMUTATIONS = 1000
QUERY_SIZE = 100

SEARCH_COLUMNS = ["rank", "study_id", "contrast", "cell_type", "score", "es_up", "es_down",
                  "pvalue", "fdr", "n_up_matched", "n_down_matched", "raw_score", "n_genes"]


# --------------------------------------------------------------------------- kernels

@numba.njit(inline="always", cache=True)
def _ks(ranks, t, n):
    """CMap 1.0 KS score of ``t`` sorted 1-based ``ranks`` among ``n`` genes."""
    a, b = -np.inf, -np.inf
    for j in range(t):
        v = ranks[j] / n
        a = max(a, (j + 1) / t - v)
        b = max(b, v - j / t)
    return a if a > b else -b


@numba.njit(inline="always", cache=True)
def _connectivity(es_up, es_down, t_up, t_down):
    """Raw score: CMap's rule with both sides matched; a one-sided query (or signature
    matching one side only) scores that side, signed so that agreement is positive."""
    if t_up > 0 and t_down > 0:
        return es_up - es_down if np.sign(es_up) != np.sign(es_down) else 0.0
    if t_up > 0:
        return es_up
    if t_down > 0:
        return -es_down
    return np.nan


@numba.njit(parallel=True, cache=True)
def _observed(values, query, side):
    """Per signature (row of ``values``, NaN = not ranked): ES of the query's up (side 0)
    and down (side 1) genes (``query``: gene columns, ascending), matched counts and the
    number of ranked genes.

    Only the ranks of the query genes are needed, so instead of sorting 20,000 genes per
    signature each gene is binary-searched among the sorted query values (O(n log t)).
    Genes rank by value, descending; ties by gene column, ascending."""
    s_count, g_count = values.shape
    m = query.shape[0]
    es = np.full((s_count, 2), np.nan)
    matched = np.zeros((s_count, 2), np.int64)
    n_ranked = np.zeros(s_count, np.int64)
    for s in numba.prange(s_count):
        row = values[s]
        qv = np.empty(m)
        qg = np.empty(m, np.int64)
        qs = np.empty(m, np.int64)
        t = 0
        for i in range(m):
            x = row[query[i]]
            if np.isfinite(x):
                qv[t], qg[t], qs[t] = -x, query[i], side[i]
                t += 1
        order = np.argsort(qv[:t], kind="mergesort")     # stable: ties keep column order
        kv, kg, ks = qv[:t][order], qg[:t][order], qs[:t][order]
        below = np.zeros(t + 1, np.int64)   # genes with exactly j query genes ranked above
        n = 0
        for h in range(g_count):
            x = row[h]
            if not np.isfinite(x):
                continue
            n += 1
            lo, hi = 0, t
            while lo < hi:
                mid = (lo + hi) // 2
                if kv[mid] < -x or (kv[mid] == -x and kg[mid] < h):
                    lo = mid + 1
                else:
                    hi = mid
            below[lo] += 1
        n_ranked[s] = n
        ranks = np.cumsum(below)[:t]        # the i-th query gene counts itself in below[i]
        for d in range(2):
            pos = ranks[ks == d]
            matched[s, d] = pos.shape[0]
            if pos.shape[0]:
                es[s, d] = _ks(pos, pos.shape[0], n)
    return es, matched, n_ranked


@numba.njit(parallel=True, cache=True)
def _null_scores(combos, nperm, seed):
    """``nperm`` raw scores of random disjoint up/down gene sets per (n, t_up, t_down) row
    of ``combos``: exact sampling without replacement (rejection on a mark array), one
    splitmix64 stream per (seed, combo), so a signature's p-value depends neither on the
    other signatures nor on the thread count."""
    out = np.empty((combos.shape[0], nperm))
    for c in numba.prange(combos.shape[0]):
        n, t_up, t_down = combos[c, 0], combos[c, 1], combos[c, 2]
        t = t_up + t_down
        mark = np.zeros(n, np.uint8)
        pos = np.empty(t, np.int64)
        state = np.uint64(seed) * np.uint64(0x2545F4914F6CDD1D)
        for value in (n, t_up, t_down):
            state, z = splitmix64(state ^ np.uint64(value))
            state = z
        for p in range(nperm):
            for i in range(t):
                while True:
                    state, z = splitmix64(state)
                    k = np.int64((z >> np.uint64(11)) * (1.0 / 9007199254740992.0) * n)
                    if mark[k] == 0:
                        break
                mark[k] = 1
                pos[i] = k + 1
            for i in range(t):
                mark[pos[i] - 1] = 0
            up = np.sort(pos[:t_up])
            down = np.sort(pos[t_up:])
            es_up = _ks(up, t_up, n) if t_up else 0.0
            es_down = _ks(down, t_down, n) if t_down else 0.0
            out[c, p] = _connectivity(es_up, es_down, t_up, t_down)
    return out


def _raw_scores(es: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """:func:`_connectivity` over all signatures at once."""
    es_up, es_down = es[:, 0], es[:, 1]
    has_up, has_down = matched[:, 0] > 0, matched[:, 1] > 0
    with np.errstate(invalid="ignore"):
        both = np.where(np.sign(es_up) != np.sign(es_down), es_up - es_down, 0.0)
    return np.where(has_up & has_down, both,
                    np.where(has_up, es_up, np.where(has_down, -es_down, np.nan)))


# --------------------------------------------------------------------------- queries

def _match(genes: list[str], lookup: dict[str, int]) -> tuple[list[int], list[str]]:
    """Key numbers of the query genes found (first occurrence order, no repeats) and the
    names not found."""
    found, unmatched = [], []
    for name, norm in zip(genes, normalize_gene(list(genes))):
        code = lookup.get(norm) if norm is not None else None
        if code is None:
            unmatched.append(name)
        elif code not in found:
            found.append(code)
    return found, unmatched


def connectivity_scores(up: list[str], down: list[str], results: pd.DataFrame, *,
                        value: str = "stat", permutations: int = PERMUTATIONS,
                        seed: int = 0) -> pd.DataFrame:
    """Rank every signature of the catalog by its connectivity to a query.

    Parameters
    ----------
    up, down
        Query genes up- and down-regulated (symbols in any case or Ensembl ids, with or
        without version). One list may be empty: the score is then that side's ES, signed
        so that agreement is positive.
    results
        ``deg_results`` rows (study_id, contrast, cell_type, gene_id, gene_symbol and
        ``value`` are read).
    value
        Result column genes are ranked by (descending).
    permutations
        Random gene sets per null distribution.
    seed
        Seed of the permutations; the same seed gives the same p-values.

    Returns
    -------
    ``SEARCH_COLUMNS``, one row per signature, most positively connected first (rank 1),
    most reversed last; signatures that match no query gene last, score NaN. pvalue is
    two-sided on the raw score, (1 + #null with |s| >= |s_obs|) / (1 + permutations), over
    random up/down sets of the signature's matched sizes among its ranked genes; fdr is
    Benjamini-Hochberg over the signatures. ``attrs`` records the query: n_up_query,
    n_down_query, n_up_matched, n_down_matched (genes found in the catalog) and
    unmatched_up / unmatched_down (names not found).

    Raises
    ------
    ValueError
        When no query gene matches a gene of the catalog, when a gene is in both lists, or
        when both lists are empty.
    """
    up, down = [str(g) for g in up], [str(g) for g in down]
    if not up and not down:
        raise ValueError("the query has no genes: give up and/or down genes")
    encoded = _Encoded(results)
    up_codes, unmatched_up = _match(up, encoded.lookup)
    down_codes, unmatched_down = _match(down, encoded.lookup)
    if not up_codes and not down_codes:
        shown = ", ".join((up + down)[:5]) + (", ..." if len(up) + len(down) > 5 else "")
        raise ValueError(
            f"none of the {len(up) + len(down)} query genes ({shown}) match a gene of the "
            f"catalog ({encoded.n_genes} genes over {encoded.n_signatures} signatures); genes "
            "are matched on upper-cased symbols or Ensembl ids without version")
    both = sorted(set(up_codes) & set(down_codes))
    if both:
        raise ValueError("genes in both the up and the down list: "
                         + ", ".join(encoded.keys[both][:10]))

    query = np.array(up_codes + down_codes, dtype=np.int64)
    side = np.array([0] * len(up_codes) + [1] * len(down_codes), dtype=np.int64)
    order = np.argsort(query, kind="stable")
    matrix = _values(encoded, results, value, 0.0)
    es, matched, n_ranked = _observed(matrix, query[order], side[order])
    del matrix

    raw = _raw_scores(es, matched)
    pvalue = np.full(len(raw), np.nan)
    scored = np.isfinite(raw)
    if scored.any():
        combos, which = np.unique(np.column_stack([n_ranked, matched])[scored], axis=0,
                                  return_inverse=True)
        null = np.abs(_null_scores(combos.astype(np.int64), int(permutations),
                                   int(seed) & (2**63 - 1)))
        null.sort(axis=1)
        obs = np.abs(raw[scored])
        # |null| >= |obs|, with a little slack so float noise in equal scores counts as equal
        at_least = permutations - np.array([np.searchsorted(null[w], o - 1e-12, side="left")
                                            for w, o in zip(which.ravel(), obs)])
        pvalue[scored] = (1 + at_least) / (1 + permutations)
    fdr = np.full(len(raw), np.nan)
    if scored.any():
        fdr[scored] = false_discovery_control(pvalue[scored])

    top, bottom = np.nanmax(raw, initial=0.0), np.nanmin(raw, initial=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(raw > 0, raw / top, np.where(raw < 0, raw / -bottom, raw))
    rank_key = np.where(scored, -score, np.inf)
    order = np.lexsort((np.arange(len(raw)), np.nan_to_num(pvalue, nan=2.0), -np.abs(raw),
                        rank_key))
    sig = encoded.signatures
    out = pd.DataFrame({
        "rank": np.arange(1, len(raw) + 1), "study_id": sig["study_id"].to_numpy()[order],
        "contrast": sig["contrast"].to_numpy()[order],
        "cell_type": sig["cell_type"].to_numpy()[order], "score": score[order],
        "es_up": es[order, 0], "es_down": es[order, 1], "pvalue": pvalue[order],
        "fdr": fdr[order], "n_up_matched": matched[order, 0],
        "n_down_matched": matched[order, 1], "raw_score": raw[order],
        "n_genes": n_ranked[order]}, columns=SEARCH_COLUMNS)
    out.attrs.update(n_up_query=len(up), n_down_query=len(down), n_up_matched=len(up_codes),
                     n_down_matched=len(down_codes), unmatched_up=unmatched_up,
                     unmatched_down=unmatched_down)
    return out


def query_from_contrast(results: pd.DataFrame, study_id: str, contrast: str,
                        cell_type: str | None = None, n: int = QUERY_SIZE, *,
                        value: str = "stat") -> tuple[list[str], list[str]]:
    """A query from a signature of the catalog: its top ``n`` significant genes by
    ``value``, up (largest first) and down (smallest first), as gene keys (keyed over the
    whole of ``results``, as :func:`connectivity_scores` keys them). Searching with it
    ranks the signature itself first.

    Raises
    ------
    ValueError
        When the signature is not in ``results``, when ``cell_type`` is needed to choose
        among a single-cell contrast's cell types, or when it has no significant gene.
    """
    chosen = ((results["study_id"] == study_id) & (results["contrast"] == contrast)).to_numpy()
    if not chosen.any():
        raise ValueError(f"no results for study {study_id!r}, contrast {contrast!r}")
    cell_types = results.loc[chosen, "cell_type"].dropna().unique().tolist()
    if cell_type is not None:
        chosen &= (results["cell_type"] == cell_type).to_numpy()
        if not chosen.any():
            raise ValueError(f"contrast {contrast!r} of study {study_id!r} has no cell type "
                             f"{cell_type!r}; it has {sorted(cell_types)}")
    elif cell_types:
        raise ValueError(f"contrast {contrast!r} of study {study_id!r} is tested per cell "
                         f"type: choose one of {sorted(cell_types)}")
    # Keys come from the whole catalog, so an Ensembl-only study's genes get the symbols
    # other studies give them, as in the search itself.
    encoded = _Encoded(results)
    keys = np.append(encoded.keys, None)[encoded.gene[chosen]]
    rows = results.loc[chosen]
    stat = _floats(rows[value])
    significant = _flags(rows["significant"]) & np.isfinite(stat)
    frame = pd.DataFrame({"key": keys, "stat": stat})[significant & pd.notna(keys)]

    def top(frame: pd.DataFrame, ascending: bool) -> list[str]:
        ordered = frame.sort_values(["stat", "key"], ascending=[ascending, True],
                                    kind="stable")
        return ordered["key"].drop_duplicates().head(n).tolist()

    up, down = top(frame[frame["stat"] > 0], False), top(frame[frame["stat"] < 0], True)
    if not up and not down:
        raise ValueError(f"contrast {contrast!r} of study {study_id!r} has no significant "
                         "gene to query with")
    return up, down

