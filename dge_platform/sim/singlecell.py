"""Simulated single-cell (10x-like) UMI counts with known differential expression.

Cells come from ``n_donors`` donors, each profiled in both conditions (``ctrl``, ``stim``),
and belong to ``n_cell_types`` cell types (``T cells``, ``B cells``, ``Monocytes``, then
``type_4``...). Donors are multiplexed four to a 10x channel: the ``capture`` of a cell is
``{condition}_pool{k}`` where pool ``k`` holds donors ``4(k-1)+1 .. 4k`` (``ctrl_pool1`` =
d01-d04 in ctrl, ...), so doublets mix donors of one condition, as in a real multiplexed run.

Expected counts of gene g in cell c of cell type t, donor d, condition k::

    mu_cg = s_c * softmax_g(log p_g + programme_tg + donor_dg + sample_tdkg) * 2^lfc_tg[k=stim]

- ``p_g`` log-normal relative expression (sd 1.8 on log scale), so most genes are zero in
  most cells; ``s_c`` log-normal cell depth (median 1,800 UMIs, sd 0.4, a little higher in
  monocytes), giving ~2,000 UMIs and ~800-1,000 detected genes per cell.
- ``programme_tg`` cell-type programme: N(0, 0.3) everywhere plus a strong (+1.5..+2.5)
  up-shift on 3 % of genes per type; four marker genes per type (real symbols for the
  first three types: CD3E/CD3D/IL7R/CD2, MS4A1/CD79A/CD79B/CD19, CD14/LYZ/FCN1/S100A8)
  at ~0.3 % of a cell's UMIs in their own type and ~60x lower elsewhere.
- ``donor_dg`` donor random effect N(0, 0.2); ``sample_tdkg`` per pseudobulk sample
  (cell type x donor x condition) N(0, 0.15): the biological replicate noise that a
  ``~ donor + condition`` pseudobulk model sees.
- ``lfc_tg`` planted log2 fold change stim vs ctrl: per cell type a different random
  ``de_fraction`` of the (non-mitochondrial, non-marker) genes at +-``de_lfc``. Expression
  is normalised before the fold change is applied, so ``2^lfc`` is exactly the ratio of
  expected counts (the truth table).
- 13 mitochondrial genes (``MT-CO1``...) take a per-cell share of ~4.5 % x lognormal(0.35)
  of the nuclear UMIs: mitochondrial fraction mostly 2-8 %.
- Counts are negative binomial, ``Var = mu + phi_g mu^2`` with ``phi_g`` ~ 0.2 x
  lognormal(0.5). Highly expressed genes (mean > 1 per cell in a block) are drawn dense as
  gamma-Poisson; all the others exactly, without ever touching their zeros, as a compound
  Poisson: clusters proposed at rate ``mu_cg`` by thinning, kept with probability
  ``log(1 + x)/x`` (``x = mu/r``, ``r = 1/phi``), each of log-series size. Cost scales with
  UMIs, not cells x genes: 100,000 cells x 20,000 genes take ~20-35 s and ~1.4 GB peak.
- Doublets (``doublet_rate > 0``): that fraction of each capture's cells is replaced by the
  sum of itself and another random cell of the same capture; metadata stay those of the
  first cell and ``true_doublet`` is True.

    from dge_platform.sim.singlecell import simulate_cells
    sim = simulate_cells(n_cells=100_000, n_genes=20_000, n_donors=16, n_cell_types=8)
    sim.adata.write_h5ad("cells.h5ad"); sim.truth

Run as a script to time it: ``.venv/bin/python -m dge_platform.sim.singlecell [--cells N]
[--genes G] [--out cells.h5ad]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

MITO_SYMBOLS = ("MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
                "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB")
# Relative abundance of the mitochondrial transcripts (MT-CO1/2/3, MT-ATP6 dominate).
MITO_WEIGHTS = np.array([6, 4, 14, 10, 3, 10, 10, 4, 1.5, 8, 3, 1, 6], dtype=float)
NAMED_TYPES = ("T cells", "B cells", "Monocytes")
NAMED_MARKERS = {
    "T cells": ("CD3E", "CD3D", "IL7R", "CD2"),
    "B cells": ("MS4A1", "CD79A", "CD79B", "CD19"),
    "Monocytes": ("CD14", "LYZ", "FCN1", "S100A8"),
}
MARKERS_PER_TYPE = 4
DONORS_PER_CAPTURE = 4

# Model constants (see the module docstring).
LOG_P_SD = 1.8           # spread of log relative expression across genes
DEPTH_MEDIAN = 1800.0    # median nuclear UMIs per cell
DEPTH_SD = 0.4           # log-normal sd of cell depth
PROGRAMME_SD = 0.3       # broad cell-type programme
SPECIFIC_FRACTION = 0.03  # genes strongly up in one type
DONOR_SD = 0.2           # donor random effect (log scale)
SAMPLE_SD = 0.15         # cell type x donor x condition effect (log scale)
MARKER_OWN = 3e-3        # a marker's share of UMIs in its own type
MARKER_OTHER = 5e-5      # ... and in other types
MITO_SHARE = 0.045       # median mitochondrial UMIs per nuclear UMI
MITO_SD = 0.35
DISPERSION = 0.2         # median NB dispersion phi
DISPERSION_SD = 0.5
DENSE_ABOVE = 1.0        # genes above this mean per cell (in a block) are drawn dense


@dataclass
class SimulatedCells:
    """Simulated cells and their planted truth.

    Attributes
    ----------
    adata
        Cells x genes; ``X`` a ``scipy.sparse.csr_matrix`` (float32) of integer UMI counts.
        ``obs`` (index ``c000001``...): ``donor`` (``d01``...), ``condition``,
        ``cell_type``, ``capture`` (categoricals) and ``true_doublet`` (bool). ``var``
        (index ``ENSG00000000001``...): ``gene_symbol``; the first 13 genes are
        mitochondrial (``MT-``), then four markers per cell type. ``uns["simulation"]``
        holds the parameters.
    truth
        One row per (cell_type, gene_id): ``cell_type``, ``gene_id`` and ``true_lfc``
        (log2 of the expected-count ratio ``conditions[1]`` / ``conditions[0]``; 0 for
        genes that are not differentially expressed).
    """

    adata: anndata.AnnData
    truth: pd.DataFrame


def cell_type_names(n_cell_types: int) -> list[str]:
    """``T cells``, ``B cells``, ``Monocytes``, then ``type_4``, ``type_5``..."""
    return [NAMED_TYPES[i] if i < len(NAMED_TYPES) else f"type_{i + 1}"
            for i in range(n_cell_types)]


def marker_symbols(cell_type: str, index: int) -> tuple[str, ...]:
    """The marker gene symbols of one cell type (real ones for the first three types)."""
    if cell_type in NAMED_MARKERS:
        return NAMED_MARKERS[cell_type]
    return tuple(f"MARKER{index + 1}_{j + 1}" for j in range(MARKERS_PER_TYPE))


def capture_of(condition: str, donor_index: int) -> str:
    """The 10x channel of a donor's cells in a condition: four donors pooled per channel."""
    return f"{condition}_pool{donor_index // DONORS_PER_CAPTURE + 1}"


def _split(total: int, parts: int) -> np.ndarray:
    """``total`` as ``parts`` near-equal integers (the first ones get the remainder)."""
    sizes = np.full(parts, total // parts)
    sizes[: total % parts] += 1
    return sizes


def _nb_block(rng: np.random.Generator, depth: np.ndarray, rel: np.ndarray, r: np.ndarray,
              mito_depth: np.ndarray, mito_rel: np.ndarray, mito_r: np.ndarray,
              n_mito: int) -> sp.csr_matrix:
    """NB counts of one block of cells sharing expected relative expression.

    Nuclear gene g in cell c has mean ``depth[c] * rel[g]`` (``rel`` covers genes
    ``n_mito..``); mitochondrial gene k has mean ``mito_depth[c] * mito_rel[k]``. Returns a
    cells x (n_mito + len(rel)) CSR matrix (float32, canonical).
    """
    m = len(depth)
    n_genes = n_mito + len(rel)
    dense = np.flatnonzero(rel * depth.mean() > DENSE_ABOVE)
    sparse_genes = np.flatnonzero(rel * depth.mean() <= DENSE_ABOVE)

    # Dense part: mitochondrial + highly expressed genes, gamma-Poisson.
    mu = np.concatenate([mito_depth[:, None] * mito_rel[None, :],
                         depth[:, None] * rel[dense][None, :]], axis=1)
    shape = np.concatenate([mito_r, r[dense]])[None, :]
    dense_counts = rng.poisson(rng.gamma(shape, mu / shape))
    d_rows, d_cols = np.nonzero(dense_counts)
    d_vals = dense_counts[d_rows, d_cols]
    d_cols = np.concatenate([np.arange(n_mito), n_mito + dense])[d_cols]

    # Sparse part: compound-Poisson NB. Clusters at rate r log(1 + mu/r) <= mu are proposed
    # at rate mu (rank one in depth x rel: Poisson totals per gene, cells by depth) and
    # thinned; each kept cluster contributes a log-series number of UMIs.
    rel_s, r_s = rel[sparse_genes], r[sparse_genes]
    n_prop = rng.poisson(rel_s * depth.sum())
    genes = np.repeat(np.arange(len(sparse_genes)), n_prop)
    cum = np.cumsum(depth)
    cells = np.minimum(np.searchsorted(cum, rng.random(len(genes)) * cum[-1], side="right"),
                       m - 1)
    x = depth[cells] * (rel_s / r_s)[genes]
    keep = rng.random(len(genes)) * x < np.log1p(x)
    genes, cells, x = genes[keep], cells[keep], x[keep]
    sizes = rng.logseries(x / (1 + x))

    rows = np.concatenate([d_rows, cells])
    cols = np.concatenate([d_cols, n_mito + sparse_genes[genes]])
    vals = np.concatenate([d_vals, sizes]).astype(np.float32)
    block = sp.coo_matrix((vals, (rows, cols)), shape=(m, n_genes)).tocsr()
    block.sum_duplicates()
    block.sort_indices()
    return block


def _add_doublets(rng: np.random.Generator, counts: sp.csr_matrix,
                  rate: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """Replace ``rate`` of the rows by the sum of themselves and another random row."""
    m = counts.shape[0]
    n_doublets = int(round(rate * m)) if m > 1 else 0
    is_doublet = np.zeros(m, dtype=bool)
    if n_doublets == 0:
        return counts, is_doublet
    first = rng.choice(m, size=n_doublets, replace=False)
    partner = (first + rng.integers(1, m, size=n_doublets)) % m  # never the cell itself
    is_doublet[first] = True
    mixing = sp.identity(m, dtype=np.float32, format="csr") + sp.csr_matrix(
        (np.ones(n_doublets, dtype=np.float32), (first, partner)), shape=(m, m))
    merged = (mixing @ counts).tocsr()
    merged.sort_indices()
    return merged, is_doublet


def _stack_rows(pieces: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """Stack CSR matrices row-wise, emptying ``pieces`` as they are copied (peak memory
    ~ the result plus one piece, not twice the result)."""
    nnz = sum(p.nnz for p in pieces)
    n_rows = sum(p.shape[0] for p in pieces)
    index_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
    data = np.empty(nnz, dtype=np.float32)
    indices = np.empty(nnz, dtype=index_dtype)
    indptr = np.zeros(n_rows + 1, dtype=index_dtype)
    row = pos = 0
    while pieces:
        piece = pieces.pop(0)
        n, z = piece.shape[0], piece.nnz
        data[pos:pos + z] = piece.data
        indices[pos:pos + z] = piece.indices
        indptr[row + 1:row + n + 1] = piece.indptr[1:] + pos
        row, pos = row + n, pos + z
        del piece
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def simulate_cells(n_cells: int = 2000, n_genes: int = 2000, n_donors: int = 6,
                   n_cell_types: int = 3, conditions: tuple[str, str] = ("ctrl", "stim"),
                   de_fraction: float = 0.05, de_lfc: float = 1.0, doublet_rate: float = 0.0,
                   seed: int = 0) -> SimulatedCells:
    """Simulate a two-condition, multi-donor single-cell experiment.

    Parameters
    ----------
    n_cells
        Cells in total, split evenly over donor x condition and then multinomially over
        cell types (proportions ~0.75^rank, Dirichlet-perturbed per donor).
        (default: ``2000``)
    n_genes
        Genes, at least 13 mitochondrial + 4 markers per cell type + 10.
        (default: ``2000``)
    n_donors
        Donors, each contributing cells in both conditions. (default: ``6``)
    n_cell_types
        Cell types. (default: ``3``)
    conditions
        Reference and treated condition labels; the truth is log2 treated / reference.
        (default: ``("ctrl", "stim")``)
    de_fraction
        Fraction of all genes planted as differentially expressed in each cell type (a
        different random set per type). (default: ``0.05``)
    de_lfc
        Absolute planted log2 fold change, random sign per gene and type.
        (default: ``1.0``)
    doublet_rate
        Fraction of each capture's cells replaced by doublets. (default: ``0.0``)
    seed
        Seed of the single ``numpy.random.Generator`` used throughout: the same seed and
        arguments give identical output. (default: ``0``)

    Returns
    -------
    SimulatedCells
        The AnnData (sparse counts and metadata) and the truth table.
    """
    n_mito = len(MITO_SYMBOLS)
    n_markers = MARKERS_PER_TYPE * n_cell_types
    if n_genes < n_mito + n_markers + 10:
        raise ValueError(f"n_genes must be at least {n_mito + n_markers + 10} for "
                         f"{n_cell_types} cell types, got {n_genes}")
    if n_donors < 1 or n_cell_types < 1 or n_cells < 2 * n_donors:
        raise ValueError("need at least one donor and cell type and two cells per donor x "
                         "condition")
    if len(conditions) != 2 or conditions[0] == conditions[1]:
        raise ValueError(f"conditions must be two distinct labels, got {conditions!r}")
    if not 0 <= de_fraction <= 1 or not 0 <= doublet_rate < 1:
        raise ValueError("de_fraction must lie in [0, 1] and doublet_rate in [0, 1)")

    rng = np.random.default_rng(seed)
    types = cell_type_names(n_cell_types)
    donors = [f"d{i + 1:02d}" for i in range(n_donors)]
    gene_ids = [f"ENSG{i + 1:011d}" for i in range(n_genes)]
    symbols = list(MITO_SYMBOLS)
    for t, name in enumerate(types):
        symbols += marker_symbols(name, t)
    symbols += [f"SIM{i + 1:05d}" for i in range(len(symbols), n_genes)]
    n_nuc = n_genes - n_mito  # nuclear genes; index j here = gene n_mito + j
    markers = np.arange(n_markers).reshape(n_cell_types, MARKERS_PER_TYPE)
    others = np.arange(n_markers, n_nuc)

    # Gene-level parameters.
    log_p = rng.normal(0.0, LOG_P_SD, n_nuc)
    phi = DISPERSION * np.exp(rng.normal(0.0, DISPERSION_SD, n_genes))
    r_all = 1.0 / phi
    mito_rel = MITO_WEIGHTS / MITO_WEIGHTS.sum()
    programme = rng.normal(0.0, PROGRAMME_SD, (n_cell_types, n_nuc))
    specific = rng.random((n_cell_types, n_nuc)) < SPECIFIC_FRACTION
    programme += specific * rng.uniform(1.5, 2.5, (n_cell_types, n_nuc))
    depth_type = np.array([0.15 if name == "Monocytes" else 0.0 for name in types])
    depth_type += np.where(np.arange(n_cell_types) >= len(NAMED_TYPES),
                           rng.normal(0.0, 0.1, n_cell_types), 0.0)
    donor_effect = rng.normal(0.0, DONOR_SD, (n_donors, n_nuc))

    # Planted truth (log2, nuclear non-marker genes only).
    lfc = np.zeros((n_cell_types, n_genes))
    n_de = int(round(de_fraction * n_genes)) if de_lfc != 0 else 0
    if n_de > len(others):
        raise ValueError(f"de_fraction too large: {n_de} DE genes, {len(others)} eligible")
    for t in range(n_cell_types):
        de = rng.choice(others, size=n_de, replace=False)
        lfc[t, n_mito + de] = de_lfc * rng.choice([-1.0, 1.0], size=n_de)

    # Cell numbers: even over donor x condition, multinomial over types per donor.
    base = 0.75 ** np.arange(n_cell_types)
    base /= base.sum()
    donor_props = rng.dirichlet(base * 50.0, size=n_donors)
    per_sample = _split(n_cells, n_donors * 2).reshape(n_donors, 2)
    n_block = np.stack([[rng.multinomial(per_sample[d, k], donor_props[d])
                         for k in range(2)] for d in range(n_donors)])  # donor, cond, type

    # One capture (condition x pool of donors) at a time, so only the finished captures and
    # one capture in progress are held; their arrays are then moved into one CSR matrix.
    pieces, frames = [], []
    for k, condition in enumerate(conditions):
        for start in range(0, n_donors, DONORS_PER_CAPTURE):
            capture = capture_of(condition, start)
            parts, obs_parts = [], []
            for d in range(start, min(start + DONORS_PER_CAPTURE, n_donors)):
                for t, cell_type in enumerate(types):
                    m = int(n_block[d, k, t])
                    if m == 0:
                        continue
                    rel = np.exp(log_p + programme[t] + donor_effect[d]
                                 + rng.normal(0.0, SAMPLE_SD, n_nuc))
                    rel[others] /= rel[others].sum()
                    own = np.zeros(n_markers, dtype=bool)
                    own[markers[t]] = True
                    rel[:n_markers] *= (np.where(own, MARKER_OWN, MARKER_OTHER)
                                        / np.exp(log_p[:n_markers] + programme[t, :n_markers]))
                    rel /= rel.sum()
                    if k == 1:
                        rel *= 2.0 ** lfc[t, n_mito:]
                    depth = DEPTH_MEDIAN * np.exp(depth_type[t] + rng.normal(0.0, DEPTH_SD, m))
                    mito_depth = depth * MITO_SHARE * np.exp(rng.normal(0.0, MITO_SD, m))
                    parts.append(_nb_block(rng, depth, rel, r_all[n_mito:], mito_depth,
                                           mito_rel, r_all[:n_mito], n_mito))
                    obs_parts.append(pd.DataFrame({
                        "donor": donors[d], "condition": condition, "cell_type": cell_type,
                        "capture": capture}, index=range(m)))
            if not parts:
                continue
            counts = sp.vstack(parts, format="csr")
            del parts
            obs = pd.concat(obs_parts, ignore_index=True)
            order = rng.permutation(counts.shape[0])  # a channel's cells come in random order
            counts, obs = counts[order], obs.iloc[order].reset_index(drop=True)
            counts, obs["true_doublet"] = _add_doublets(rng, counts, doublet_rate)
            pieces.append(counts)
            frames.append(obs)
    X = _stack_rows(pieces, n_genes)
    obs = pd.concat(frames, ignore_index=True)
    width = max(6, len(str(len(obs))))
    obs.index = pd.Index([f"c{i + 1:0{width}d}" for i in range(len(obs))], name="cell_id")
    obs["donor"] = pd.Categorical(obs["donor"], categories=donors)
    obs["condition"] = pd.Categorical(obs["condition"], categories=list(conditions))
    obs["cell_type"] = pd.Categorical(obs["cell_type"], categories=types)
    obs["capture"] = pd.Categorical(obs["capture"],
                                    categories=list(dict.fromkeys(obs["capture"])))
    obs["true_doublet"] = obs["true_doublet"].astype(bool)
    var = pd.DataFrame({"gene_symbol": symbols}, index=pd.Index(gene_ids, name="gene_id"))
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.uns["simulation"] = {
        "n_cells": n_cells, "n_genes": n_genes, "n_donors": n_donors,
        "n_cell_types": n_cell_types, "conditions": list(conditions),
        "de_fraction": de_fraction, "de_lfc": de_lfc, "doublet_rate": doublet_rate,
        "seed": seed, "donors_per_capture": DONORS_PER_CAPTURE,
    }
    truth = pd.DataFrame({
        "cell_type": np.repeat(types, n_genes),
        "gene_id": np.tile(gene_ids, n_cell_types),
        "true_lfc": lfc.ravel(),
    })
    return SimulatedCells(adata=adata, truth=truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--donors", type=int, default=16)
    parser.add_argument("--cell-types", type=int, default=8)
    parser.add_argument("--doublet-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the AnnData here (.h5ad)")
    args = parser.parse_args()
    import resource

    start = time.perf_counter()
    sim = simulate_cells(n_cells=args.cells, n_genes=args.genes, n_donors=args.donors,
                         n_cell_types=args.cell_types, doublet_rate=args.doublet_rate,
                         seed=args.seed)
    seconds = time.perf_counter() - start
    X = sim.adata.X
    totals = np.asarray(X.sum(axis=1)).ravel()
    detected = np.diff(X.indptr)
    mito = np.asarray(X[:, :len(MITO_SYMBOLS)].sum(axis=1)).ravel() / totals
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"{X.shape[0]:,} cells x {X.shape[1]:,} genes in {seconds:.1f} s, peak RSS "
          f"{peak_gb:.2f} GB; nnz {X.nnz:,} ({X.nnz / X.shape[0] / X.shape[1]:.2%}); UMIs/cell "
          f"mean {totals.mean():.0f} median {np.median(totals):.0f}; genes/cell median "
          f"{np.median(detected):.0f}; mito fraction 5/50/95 % "
          f"{np.percentile(mito, [5, 50, 95]).round(3).tolist()}")
    print(sim.adata.obs.groupby(["cell_type"], observed=True).size().to_string())
    if args.out:
        sim.adata.write_h5ad(args.out)


if __name__ == "__main__":
    main()
