"""Cross-study views of the catalog's DEG results: how often a gene is called up or down
across studies, and which contrasts of the whole catalog resemble each other.

The unit of comparison is a *signature*: one (study_id, contrast, cell_type) of
``deg_results`` (cell_type is null except in single-cell studies, which test each contrast
per cell type). Studies name genes differently (versioned Ensembl ids in one, symbols in
another, mouse-style capitalisation in a third), so genes are matched on a *gene key*:

1. the gene_symbol, upper-cased, when the row has one;
2. else the symbol that other rows of the catalog give the same gene_id (version dropped),
   so an Ensembl-only study still meets the symbol-annotated ones (the most frequent such
   symbol when annotations disagree);
3. else the gene_id itself, upper-cased (Ensembl version dropped).

Ensembl ids lose their version suffix (``ENSG00000141510.17`` -> ``ENSG00000141510``;
GENCODE's ``_PAR_Y`` tag is kept, the Y copy is another gene). Only Ensembl-style ids are
stripped: a dot in other ids is part of the name (``RP11-34P13.3``). Upper-casing makes
mouse ``Actb`` meet human ``ACTB``: a one-to-one-ortholog approximation, wrong for the few
genes without a same-named ortholog.

When several rows of one signature share a key (two Ensembl ids annotated with one
symbol), the row with the largest base_mean stands for the gene.

Everything is array work on integer codes, so a catalog of 5,000 signatures x 20,000 genes
(100 million rows) fits on the 2-core machine: rows become a signatures x genes matrix in
one scatter, and :func:`contrast_similarity` correlates it in blocks of signatures with
masked matrix products (pairwise-complete Pearson without a loop over pairs), keeping only
each signature's top neighbours; see bench/contrast_similarity.py for times and memory.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

MIN_BASE_MEAN = 10.0
MIN_SHARED_GENES = 100
TOP_K = 10
BLOCK_SIZE = 512
CHUNK_ROWS = 10_000_000

SIGNATURE_COLUMNS = ["study_id", "contrast", "cell_type"]
RECURRENCE_COLUMNS = ["gene_key", "gene_symbol", "n_studies", "n_contrasts", "n_up", "n_down",
                      "n_studies_up", "n_studies_down", "fraction_up", "fraction_down",
                      "median_log2_fold_change"]
NEIGHBOR_COLUMNS = ["study_id", "contrast", "cell_type", "rank", "neighbor_study_id",
                    "neighbor_contrast", "neighbor_cell_type", "correlation", "n_shared_genes"]

_ENSEMBL = r"^(ENS[A-Z]*\d{6,})\.\d+(_PAR_Y)?$"


# --------------------------------------------------------------------------- gene keys

def normalize_gene(names: pd.Series | pd.Index | list[str]) -> pd.Series:
    """Gene names as comparable keys: stripped, upper-cased, Ensembl version dropped;
    null or empty names give null."""
    text = pd.Series(names, dtype=object).astype("string").str.strip().str.upper()
    text = text.str.replace(_ENSEMBL, r"\1\2", regex=True)
    present = (text.notna() & (text != "")).to_numpy(dtype=bool)
    return pd.Series(np.where(present, text.to_numpy(dtype=object, na_value=None), None),
                     index=text.index, dtype=object)


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 for null, smallest integer type) and the values they stand for. A
    categorical column is read through its codes: hashing 100 million strings is the slow
    part otherwise."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), pd.Index(column.cat.categories)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes.astype(np.int32), pd.Index(uniques)


def _floats(column: pd.Series) -> np.ndarray:
    """A column as float64, NaN for null; no copy when it already is float64."""
    if column.dtype == np.float64:
        return column.to_numpy()
    return column.to_numpy(dtype=float, na_value=np.nan)


def _flags(column: pd.Series) -> np.ndarray:
    """A boolean column as a numpy bool array, null = False."""
    if column.dtype == bool:
        return column.to_numpy()
    return pd.array(column, dtype="boolean").fillna(False).to_numpy(dtype=bool)


def _chunks(n: int, size: int = CHUNK_ROWS):
    """Row ranges of at most ``size``: bounds the temporaries on 100-million-row tables."""
    return (slice(start, min(start + size, n)) for start in range(0, n, size))


class _Encoded:
    """Rows of a results table as integer signature and gene-key codes.

    ``signature`` (per row, 0..n_signatures-1 in order of first appearance) indexes
    ``signatures`` (study_id, contrast, cell_type); ``gene`` (per row, -1 when the row has
    neither gene_id nor gene_symbol) indexes ``keys`` (sorted, so gene order, and with it
    tie-breaking, does not depend on row order). ``symbols`` holds each key's most frequent
    original gene_symbol (the key where no row has one); ``lookup`` maps normalized names
    (keys, symbols, unversioned gene_ids) to key numbers; ``ambiguous`` marks keys that more
    than one gene_id maps to, the only ones that can repeat within a signature.
    """

    def __init__(self, results: pd.DataFrame):
        missing = [c for c in SIGNATURE_COLUMNS + ["gene_id"] if c not in results.columns]
        if missing:
            raise ValueError(f"results lack column(s) {missing}")
        self._encode_signatures(results)
        self._encode_genes(results)

    def _encode_signatures(self, results: pd.DataFrame) -> None:
        parts = [_codes(results[c]) for c in SIGNATURE_COLUMNS]
        n_rows = len(results)
        # The catalog stores a signature's rows together: hash one value per run of equal
        # (study, contrast, cell type) codes instead of one per row. Exact in any order.
        change = np.zeros(n_rows, dtype=bool)
        change[:1] = True
        for codes, _ in parts:
            change[1:] |= codes[1:] != codes[:-1]
        starts = np.flatnonzero(change)
        del change
        heads = np.zeros(len(starts), dtype=np.int64)
        for codes, uniques in parts:      # mixed radix, +1 so that null (-1) is a value
            heads = heads * (len(uniques) + 1) + (codes[starts].astype(np.int64) + 1)
        run_signature, unique_heads = pd.factorize(heads)
        lengths = np.diff(np.append(starts, n_rows))
        self.signature = np.repeat(run_signature.astype(np.int32), lengths)
        rest = np.asarray(unique_heads, dtype=np.int64)
        columns = {}
        for name, (_, uniques) in reversed(list(zip(SIGNATURE_COLUMNS, parts))):
            radix = len(uniques) + 1
            values = np.append(np.asarray(uniques, dtype=object), None)   # -1 -> None
            columns[name] = values[rest % radix - 1]
            rest = rest // radix
        self.signatures = pd.DataFrame({c: columns[c] for c in SIGNATURE_COLUMNS})

    def _encode_genes(self, results: pd.DataFrame) -> None:
        id_codes, ids = _codes(results["gene_id"])
        if "gene_symbol" in results.columns:
            sym_codes, symbols = _codes(results["gene_symbol"])
        else:
            sym_codes, symbols = np.full(len(results), -1, dtype=np.int8), pd.Index([])
        radix = len(symbols) + 1

        def pairs(rows: slice) -> np.ndarray:
            return id_codes[rows].astype(np.int64) * radix + (sym_codes[rows] + 1)

        # Keys are worked out once per distinct (gene_id, gene_symbol) pair, not per row.
        unique_pairs = pd.unique(np.concatenate(
            [pd.unique(pairs(rows)) for rows in _chunks(len(results))] or [np.zeros(0, int)]))
        pair_index = pd.Index(unique_pairs)
        pair_of_row = np.empty(len(results), dtype=np.int32)
        for rows in _chunks(len(results)):
            pair_of_row[rows] = pair_index.get_indexer(pairs(rows))
        rows_per_pair = np.bincount(pair_of_row, minlength=len(unique_pairs))
        pair_id, pair_sym = unique_pairs // radix, unique_pairs % radix - 1   # floor: -1 ok
        id_text = np.append(np.asarray(ids, dtype=object), None)
        sym_text = np.append(np.asarray(symbols, dtype=object), None)
        id_norm = normalize_gene(id_text[pair_id])
        sym_raw = pd.Series(sym_text[pair_sym], dtype=object)
        sym_norm = normalize_gene(sym_raw)

        # gene_id -> symbol key seen elsewhere in the catalog, most rows first, then by name.
        known = pd.DataFrame({"id": id_norm, "sym": sym_norm, "rows": rows_per_pair})
        known = known.dropna(subset=["id", "sym"])
        known = known.groupby(["id", "sym"], as_index=False)["rows"].sum()
        known = known.sort_values(["rows", "sym"], ascending=[False, True], kind="stable")
        id_to_symbol = known.drop_duplicates("id").set_index("id")["sym"]
        key = sym_norm.where(sym_norm.notna(), id_norm.map(id_to_symbol))
        key = key.where(key.notna(), id_norm)

        key_code, keys = pd.factorize(key, sort=True, use_na_sentinel=True)
        self.keys = np.asarray(keys, dtype=object)
        self.gene = np.empty(len(results), dtype=np.int32)
        for rows in _chunks(len(results)):
            self.gene[rows] = key_code[pair_of_row[rows]]
        del pair_of_row
        # Representative spelling: the most frequent original symbol of each key.
        spelled = pd.DataFrame({"key": key_code, "sym": sym_raw, "rows": rows_per_pair})
        spelled = spelled[(spelled["key"] >= 0) & spelled["sym"].notna()]
        spelled = spelled.groupby(["key", "sym"], as_index=False)["rows"].sum()
        spelled = spelled.sort_values(["rows", "sym"], ascending=[False, True], kind="stable")
        spelled = spelled.drop_duplicates("key").set_index("key")["sym"]
        self.symbols = self.keys.copy()
        self.symbols[spelled.index.to_numpy()] = spelled.to_numpy()
        # Names a query may use for a key: its symbols and gene_ids, normalized; a name
        # several keys claim goes to the key with most rows, and a key's own name wins.
        names = pd.DataFrame({"name": pd.concat([sym_norm, id_norm], ignore_index=True),
                              "code": np.concatenate([key_code, key_code]),
                              "rows": np.concatenate([rows_per_pair, rows_per_pair])})
        names = names[names["name"].notna() & (names["code"] >= 0)]
        names = names.groupby(["name", "code"], as_index=False)["rows"].sum()
        names = names.sort_values(["rows", "code"], ascending=[False, True], kind="stable")
        names = names.drop_duplicates("name")
        self.lookup = dict(zip(names["name"], names["code"].astype(int)))
        self.lookup.update((k, i) for i, k in enumerate(self.keys))
        tested = key_code >= 0
        ids_per_key = pd.Series(id_norm.to_numpy()[tested]).groupby(key_code[tested]).nunique()
        # One extra False at the end: gene code -1 (no name) indexes it.
        self.ambiguous = np.zeros(len(self.keys) + 1, dtype=bool)
        self.ambiguous[ids_per_key.index[ids_per_key.to_numpy() > 1]] = True

    @property
    def n_signatures(self) -> int:
        return len(self.signatures)

    @property
    def n_genes(self) -> int:
        return len(self.keys)

    def _cells(self, rows: np.ndarray | slice) -> np.ndarray:
        return self.signature[rows].astype(np.int64) * self.n_genes + self.gene[rows]

    def representatives(self, usable: np.ndarray, priority: np.ndarray) -> np.ndarray:
        """Boolean row mask: among ``usable`` rows naming a gene, one per (signature, gene
        key), the largest ``priority`` (NaN lowest; ties: first row).

        Only keys several gene_ids map to can repeat within a signature, so only their rows
        (a few percent) are sorted; a bitmap of signature x gene cells then confirms that
        no other cell repeats (else, a signature lists a gene_id twice, every row is sorted).
        """
        keep = usable & (self.gene >= 0)
        self._drop_repeats(keep, np.flatnonzero(keep & self.ambiguous[self.gene]), priority)
        seen = np.zeros(self.n_signatures * self.n_genes, dtype=bool)
        total = 0
        for rows in _chunks(len(keep)):
            cells = self._cells(rows)[keep[rows]]
            seen[cells] = True
            total += len(cells)
        if int(np.count_nonzero(seen)) != total:
            self._drop_repeats(keep, np.flatnonzero(keep), priority)
        return keep

    def _drop_repeats(self, keep: np.ndarray, rows: np.ndarray, priority: np.ndarray) -> None:
        """Clear ``keep`` for all but the first of ``rows`` per cell, by priority."""
        if not len(rows):
            return
        cells = self._cells(rows)
        score = np.nan_to_num(priority[rows].astype(float), nan=-np.inf)
        order = np.lexsort((rows, -score, cells))
        repeat = np.concatenate([[False], cells[order][1:] == cells[order][:-1]])
        keep[rows[order[repeat]]] = False

    def scatter(self, keep: np.ndarray, column: np.ndarray, fill: float | int = np.nan,
                dtype: type = np.float64) -> np.ndarray:
        """Signatures x genes array of ``column`` over the ``keep`` rows, ``fill`` elsewhere."""
        matrix = np.full((self.n_signatures, self.n_genes), fill, dtype=dtype)
        flat = matrix.reshape(-1)
        for rows in _chunks(len(keep)):
            chosen = keep[rows]
            flat[self._cells(rows)[chosen]] = column[rows][chosen]
        return matrix


def signature_key(results: pd.DataFrame) -> pd.DataFrame:
    """Each row's signature and gene key.

    Parameters
    ----------
    results
        ``deg_results`` rows (study_id, contrast, cell_type, gene_id and, optionally,
        gene_symbol are read).

    Returns
    -------
    DataFrame on the index of ``results``: study_id, contrast, cell_type, signature (an
    integer id per distinct (study_id, contrast, cell_type), numbered in order of first
    appearance) and gene_key (categorical; null when the row names no gene). See the module
    docstring for how keys are formed.
    """
    encoded = _Encoded(results)
    sig = encoded.signatures.take(encoded.signature)
    key = pd.Categorical.from_codes(encoded.gene, categories=pd.Index(encoded.keys,
                                                                      dtype=object))
    return pd.DataFrame({
        "study_id": sig["study_id"].to_numpy(), "contrast": sig["contrast"].to_numpy(),
        "cell_type": sig["cell_type"].to_numpy(), "signature": encoded.signature.astype(np.int64),
        "gene_key": key}, index=results.index)


# --------------------------------------------------------------------------- recurrence

def gene_recurrence(results: pd.DataFrame) -> pd.DataFrame:
    """How often each gene is called up or down across the catalog.

    A gene counts as *tested* in a signature when it has a p-value and a fold change there
    (genes removed by independent filtering were tested, only not adjusted; all-zero genes
    and Cook's outliers were not), and as *up* / *down* when ``significant`` (padj below its
    study's alpha; null counts as not significant) with a positive / negative
    log2_fold_change.

    Parameters
    ----------
    results
        ``deg_results`` rows: study_id, contrast, cell_type, gene_id, gene_symbol,
        base_mean, log2_fold_change, pvalue, significant.

    Returns
    -------
    One row per gene key, ``RECURRENCE_COLUMNS``: gene_symbol (most frequent original
    spelling), n_studies and n_contrasts where tested (a contrast is a signature: per cell
    type in single-cell studies), n_up / n_down signatures, n_studies_up / n_studies_down
    (a study counts once per direction, so a gene up in one contrast and down in another
    counts in both), fraction_up / fraction_down (of tested signatures) and the median
    log2_fold_change over tested signatures. Most recurrent first: n_up + n_down, then
    n_studies_up + n_studies_down, descending; ties by gene key.
    """
    encoded = _Encoded(results)
    lfc = _floats(results["log2_fold_change"])
    base_mean = _floats(results["base_mean"]) if "base_mean" in results.columns \
        else np.zeros(len(results))
    keep = encoded.representatives(np.isfinite(_floats(results["pvalue"])) & np.isfinite(lfc),
                                   base_mean)
    # Signatures x genes: the fold change (NaN = not tested) and the call (+1 up, -1 down).
    fold = encoded.scatter(keep, lfc)
    significant = _flags(results["significant"])
    call = np.where(significant & (lfc > 0), 1, np.where(significant & (lfc < 0), -1, 0))
    call = encoded.scatter(keep, call.astype(np.int8), fill=0, dtype=np.int8)
    del keep, significant
    study = pd.factorize(encoded.signatures["study_id"], use_na_sentinel=False)[0]
    by_study = np.argsort(study, kind="stable")
    study_starts = np.flatnonzero(np.diff(study[by_study], prepend=-1))

    def per_study(hit: np.ndarray) -> np.ndarray:
        """Studies with a hit in at least one of their signatures, per gene."""
        if not len(study_starts):
            return np.zeros(hit.shape[1], dtype=np.int64)
        return np.logical_or.reduceat(hit[by_study], study_starts, axis=0).sum(axis=0)

    columns: dict[str, list[np.ndarray]] = {c: [] for c in RECURRENCE_COLUMNS[2:]}
    for genes in _chunks(encoded.n_genes, 2048):
        tested, up, down = np.isfinite(fold[:, genes]), call[:, genes] > 0, call[:, genes] < 0
        n_contrasts, n_up, n_down = tested.sum(axis=0), up.sum(axis=0), down.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # a gene never tested
            median = np.nanmedian(fold[:, genes], axis=0)
            fraction_up, fraction_down = n_up / n_contrasts, n_down / n_contrasts
        for name, part in (("n_studies", per_study(tested)), ("n_contrasts", n_contrasts),
                           ("n_up", n_up), ("n_down", n_down),
                           ("n_studies_up", per_study(up)), ("n_studies_down", per_study(down)),
                           ("fraction_up", fraction_up), ("fraction_down", fraction_down),
                           ("median_log2_fold_change", median)):
            columns[name].append(part)
    out = pd.DataFrame({"gene_key": encoded.keys, "gene_symbol": encoded.symbols,
                        **{c: np.concatenate(v) if v else np.zeros(0)
                           for c, v in columns.items()}}, columns=RECURRENCE_COLUMNS)
    out = out[out["n_contrasts"] > 0]
    order = np.lexsort((out["gene_key"].to_numpy(dtype=str),
                        -(out["n_studies_up"] + out["n_studies_down"]).to_numpy(),
                        -(out["n_up"] + out["n_down"]).to_numpy()))
    return out.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- similarity

def signature_values(results: pd.DataFrame, *, value: str = "stat",
                     min_base_mean: float = 0.0) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Signatures x gene keys matrix of one result column.

    Parameters
    ----------
    results
        ``deg_results`` rows.
    value
        Column to spread (``stat``, ``log2_fold_change``, ...).
    min_base_mean
        Rows with base_mean below it (or null) are left out: the fold changes of barely
        detected genes are noise that would dilute a correlation. 0 (or results without a
        base_mean column) keeps every row.

    Returns
    -------
    (values, signatures, keys): float64 array n_signatures x n_genes, NaN where the gene
    was not tested, filtered or null; the study_id, contrast, cell_type of each row of
    ``values``; the gene key of each column (sorted).
    """
    encoded = _Encoded(results)
    return _values(encoded, results, value, min_base_mean), encoded.signatures, encoded.keys


def _values(encoded: _Encoded, results: pd.DataFrame, value: str,
            min_base_mean: float) -> np.ndarray:
    """The matrix of :func:`signature_values` from already encoded rows."""
    if value not in results.columns:
        raise ValueError(f"results have no column {value!r}")
    column = _floats(results[value])
    usable = np.isfinite(column)
    if "base_mean" in results.columns:
        base_mean = _floats(results["base_mean"])
        if min_base_mean > 0:
            usable &= base_mean >= min_base_mean          # null base_mean fails too
    else:
        base_mean = np.zeros(len(results))
    return encoded.scatter(encoded.representatives(usable, base_mean), column)


def _standardize(matrix: np.ndarray, rows: int = 256) -> np.ndarray:
    """In place: zero-fill ``matrix`` and centre and scale each signature over its own
    genes; returns the tested mask. Pearson's r does not change under a per-signature shift
    and scale, but the moment sums of the masked formula then stay near n instead of
    n x mean^2, so the differences n*sxy - sx*sy lose no digits to cancellation. Works on
    ``rows`` signatures at a time (no full-size temporaries)."""
    mask = np.isfinite(matrix)
    for part in _chunks(len(matrix), rows):
        block, tested = matrix[part], mask[part]
        block[~tested] = 0.0
        count = np.maximum(tested.sum(axis=1), 1)
        block -= (block.sum(axis=1) / count)[:, None]
        block[~tested] = 0.0
        scale = np.sqrt((block * block).sum(axis=1) / count)
        block /= np.where(scale > 0, scale, 1.0)[:, None]
    return mask


def _mask_groups(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct tested-gene masks and each signature's mask number. Signatures of one
    study (and cell type) usually share a mask: then the masked sums become products with
    a handful of masks instead of with every signature."""
    packed = np.packbits(mask, axis=1)
    seen: dict[bytes, int] = {}
    group = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in packed],
                     dtype=np.int64)
    first = np.unique(group, return_index=True)[1]
    return mask[first], group


def _block(xa: np.ndarray, sqa: np.ndarray, ga: np.ndarray, xb: np.ndarray, sqb: np.ndarray,
           gb: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`correlation_block` on given values, squares and mask numbers."""
    ua, ia = np.unique(ga, return_inverse=True)
    ub, ib = np.unique(gb, return_inverse=True)
    ma, mb = masks[ua], masks[ub]
    # Counts are exact in float32 below 2**24 genes, at twice the float64 speed.
    n = (ma.astype(np.float32) @ mb.astype(np.float32).T).astype(np.float64)[ia][:, ib]
    ma, mb = ma.T.astype(np.float64), mb.T.astype(np.float64)
    sx, sxx = (xa @ mb)[:, ib], (sqa @ mb)[:, ib]
    sy, syy = (ma.T @ xb.T)[ia], (ma.T @ sqb.T)[ia]
    sxy = xa @ xb.T
    var_x = n * sxx - sx * sx
    var_y = n * syy - sy * sy
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (n * sxy - sx * sy) / np.sqrt(var_x * var_y)
    # A signature constant over the shared genes has no correlation; rounding leaves its
    # variance a tiny positive number instead of 0, so compare it to its mean square.
    flat = (var_x <= 1e-10 * n * sxx) | (var_y <= 1e-10 * n * syy) | (n < 2)
    r[flat] = np.nan
    return np.clip(r, -1.0, 1.0), n.astype(np.int64)


def correlation_block(values: np.ndarray, masks: np.ndarray, group: np.ndarray,
                      a: np.ndarray | slice, b: np.ndarray | slice
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and shared-gene counts between signatures ``a`` and ``b`` (row numbers
    or slices), each pair over the genes both tested.

    ``values`` are standardized and zero-filled (:func:`_standardize`), ``masks`` the
    distinct masks and ``group`` each signature's mask number (:func:`_mask_groups`). With
    X the values and M the masks, the pairwise-complete sums are matrix products:
    n = M_a M_b', sx = X_a M_b', sxx = X_a^2 M_b', sy = M_a X_b', syy = M_a X_b^2',
    sxy = X_a X_b' (untested genes contribute 0 everywhere), and
    r = (n sxy - sx sy) / sqrt((n sxx - sx^2)(n syy - sy^2)). The mask products run over the
    distinct masks of the block only and are expanded afterwards.
    """
    xa, xb = values[a], values[b]
    return _block(xa, xa * xa, group[a], xb, xb * xb, group[b], masks)


def _merge_top(best: list[np.ndarray], rows: np.ndarray, key: np.ndarray, r: np.ndarray,
               cols: np.ndarray, n: np.ndarray, k: int) -> None:
    """Fold candidate neighbours (rows x cols: ranking ``key``, ``r``, ``n``) into the
    running top-``k`` of ``rows``; ``best`` = [key, r, neighbour, n], each signatures x k.
    NaN keys never enter."""
    cand = [np.hstack([best[0][rows], np.where(np.isnan(key), -np.inf, key)]),
            np.hstack([best[1][rows], r]),
            np.hstack([best[2][rows], np.broadcast_to(cols, key.shape)]),
            np.hstack([best[3][rows], n])]
    if cand[0].shape[1] > k:
        keep = np.argpartition(-cand[0], k - 1, axis=1)[:, :k]
        cand = [np.take_along_axis(c, keep, axis=1) for c in cand]
    for target, values in zip(best, cand):
        target[rows] = values


def top_correlations(matrix: np.ndarray, *, min_shared_genes: int = MIN_SHARED_GENES,
                     top_k: int = TOP_K, block_size: int = BLOCK_SIZE,
                     exclude: np.ndarray | None = None, absolute: bool = False,
                     overwrite: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``top_k`` most correlated other rows of ``matrix`` (signatures x genes,
    NaN = not tested), Pearson over the genes both rows tested.

    Works on blocks of ``block_size`` signatures, upper triangle only (r is symmetric), so
    memory is O(block_size x genes + signatures x top_k) beyond the matrix itself, whatever
    the number of signatures (see :func:`correlation_block`).

    Parameters
    ----------
    matrix
        Signatures x genes values.
    min_shared_genes
        Pairs sharing fewer tested genes are not neighbours.
    top_k
        Neighbours kept per signature.
    block_size
        Signatures per block.
    exclude
        Optional group label per signature: pairs within a group are not neighbours.
    absolute
        Rank by |r| (anti-correlated signatures count as neighbours too).
    overwrite
        Standardize ``matrix`` in place instead of a copy (saves its size in memory).

    Returns
    -------
    (neighbor, r, n_shared): signatures x top_k arrays, best first; neighbor -1 (r NaN,
    n_shared 0) where fewer than top_k qualify.
    """
    s = matrix.shape[0]
    k = max(0, min(top_k, s - 1))
    values = matrix if overwrite else matrix.copy()
    masks, group = _mask_groups(_standardize(values))
    labels = None if exclude is None else pd.factorize(np.asarray(exclude, dtype=object))[0]
    best = [np.full((s, k), -np.inf), np.full((s, k), np.nan),
            np.full((s, k), -1, dtype=np.int64), np.zeros((s, k), dtype=np.int64)]
    starts = range(0, s, block_size)
    for i in starts if k else ():
        a = np.arange(i, min(i + block_size, s))
        xa = values[i:i + block_size]
        sqa = xa * xa
        for j in starts[i // block_size:]:
            b = np.arange(j, min(j + block_size, s))
            xb = values[j:j + block_size]
            r, n = _block(xa, sqa, group[a], xb, xb * xb, group[b], masks)
            invalid = n < min_shared_genes
            if i == j:
                np.fill_diagonal(invalid, True)
            if labels is not None:
                invalid |= labels[a][:, None] == labels[b][None, :]
            r[invalid] = np.nan
            key = np.abs(r) if absolute else r
            _merge_top(best, a, key, r, b, n, k)
            if i != j:
                _merge_top(best, b, key.T, r.T, a, n.T, k)
    key, r, neighbor, shared = best
    # Strongest first, ties by neighbour row number, so the order is deterministic.
    order = np.lexsort((neighbor, -key), axis=-1)
    key, r, neighbor, shared = (np.take_along_axis(x, order, axis=1)
                                for x in (key, r, neighbor, shared))
    empty = ~np.isfinite(key)
    neighbor[empty], shared[empty], r[empty] = -1, 0, np.nan
    return neighbor, r, shared


def contrast_similarity(results: pd.DataFrame, *, min_base_mean: float = MIN_BASE_MEAN,
                        min_shared_genes: int = MIN_SHARED_GENES, top_k: int = TOP_K,
                        value: str = "stat", exclude_same_study: bool = False,
                        absolute: bool = False, block_size: int = BLOCK_SIZE) -> pd.DataFrame:
    """Nearest signatures of every signature in the catalog.

    Each signature is the ``value`` column over its well-expressed genes (base_mean >=
    ``min_base_mean``); two signatures are compared by Pearson's r over the genes both
    tested (matched on gene key). The Wald statistic, the default, weighs a fold change by
    its certainty, so noisy genes of small studies do not dominate.

    Parameters
    ----------
    results
        ``deg_results`` rows (study_id, contrast, cell_type, gene_id, gene_symbol,
        base_mean and ``value`` are read).
    min_base_mean
        Expression floor for a gene to enter a signature.
    min_shared_genes
        Pairs sharing fewer genes are never neighbours: r over a handful of genes is noise
        (its sd is about 1 / sqrt(n)).
    top_k
        Neighbours listed per signature.
    value
        Result column correlated (``stat``, ``log2_fold_change``,
        ``log2_fold_change_shrunk``).
    exclude_same_study
        Leave out neighbours from the signature's own study. Contrasts of a study that
        share a control arm correlate through it, which can crowd out other studies.
    absolute
        Rank neighbours by |r|, so reversed signatures are listed too.
    block_size
        Signatures per block of the matrix computation (memory ~ 6 x block_size x genes x 8
        bytes per block on top of the signatures x genes matrix).

    Returns
    -------
    ``NEIGHBOR_COLUMNS``: per signature its neighbours, rank 1 = strongest, with r and the
    number of genes it was computed over. Signatures without a qualifying neighbour have
    no rows.
    """
    matrix, signatures, _ = signature_values(results, value=value,
                                             min_base_mean=min_base_mean)
    exclude = signatures["study_id"].to_numpy(dtype=object) if exclude_same_study else None
    neighbor, r, shared = top_correlations(matrix, min_shared_genes=min_shared_genes,
                                           top_k=top_k, block_size=block_size,
                                           exclude=exclude, absolute=absolute,
                                           overwrite=True)
    del matrix
    query, rank = np.nonzero(neighbor >= 0)
    target = neighbor[query, rank]
    ids = {c: signatures[c].to_numpy(dtype=object) for c in SIGNATURE_COLUMNS}
    return pd.DataFrame({
        "study_id": ids["study_id"][query], "contrast": ids["contrast"][query],
        "cell_type": ids["cell_type"][query], "rank": rank + 1,
        "neighbor_study_id": ids["study_id"][target],
        "neighbor_contrast": ids["contrast"][target],
        "neighbor_cell_type": ids["cell_type"][target],
        "correlation": r[query, rank], "n_shared_genes": shared[query, rank],
    }, columns=NEIGHBOR_COLUMNS)
