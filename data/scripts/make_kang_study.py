"""Build data/studies/kang2018_pbmc/cells.h5ad from the staged muscat subset (../shared/data).

Run once from the repository root:
``.venv/bin/python data/scripts/make_kang_study.py SRC``, where SRC is the staged
``kang2018_ifnb_pbmc/muscat_example_sce`` folder (counts.mtx.gz genes x cells, genes.tsv.gz,
cells.tsv.gz; muscat ``example_sce``, Kang et al. 2018). ``study.yaml`` is written by hand.

Output ``cells.h5ad`` (documented in data/README.md):
- X: cells x genes ``scipy.sparse.csr_matrix`` float32 holding the raw integer UMI counts;
- var index = Ensembl id (``ensembl_id`` of genes.tsv.gz; a gene whose id is missing or
  duplicated keeps its symbol instead, and the script prints which), column ``gene_symbol``;
- obs index = cell barcode; columns (categoricals of str) ``donor`` (``d101``, ``d107``),
  ``condition`` (``ctrl``/``stim`` = the source's ``group_id``), ``cell_type`` (the authors'
  ``cluster_id``), ``sample`` (``sample_id``, e.g. ``ctrl101``). Cell and gene order are those
  of the source files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse

OUT = Path(__file__).resolve().parents[1] / "studies" / "kang2018_pbmc"


def main(src: Path) -> None:
    genes = pd.read_csv(src / "genes.tsv.gz", sep="\t", dtype=str)
    cells = pd.read_csv(src / "cells.tsv.gz", sep="\t", dtype=str)
    matrix = scipy.io.mmread(src / "counts.mtx.gz")  # genes x cells
    if matrix.shape != (len(genes), len(cells)):
        raise SystemExit(f"matrix {matrix.shape} does not match {len(genes)} genes x "
                         f"{len(cells)} cells")
    x = scipy.sparse.csr_matrix(matrix.T, dtype=np.float32)
    x.sum_duplicates()
    x.sort_indices()
    if not np.array_equal(x.data, np.round(x.data)) or (x.data < 0).any():
        raise SystemExit("counts are not non-negative integers")

    ens = genes["ensembl_id"].str.strip()
    bad = ens.isna() | ens.eq("") | ens.duplicated(keep=False)
    if bad.any():
        print(f"{int(bad.sum())} genes without a unique Ensembl id keep their symbol: "
              + ", ".join(genes.loc[bad, "gene"]))
    var_index = ens.where(~bad, genes["gene"])
    if var_index.duplicated().any():
        raise SystemExit(f"duplicated gene ids: {sorted(set(var_index[var_index.duplicated()]))}")
    var = pd.DataFrame({"gene_symbol": genes["symbol"].fillna(genes["gene"]).to_numpy()},
                       index=pd.Index(var_index.to_numpy(), name="gene_id"))

    if cells["barcode"].duplicated().any():
        raise SystemExit("duplicated cell barcodes")
    condition = cells["group_id"]
    if not (cells["sample_id"].str[:4] == condition).all():
        raise SystemExit("sample_id does not start with the condition")
    donor = "d" + cells["sample_id"].str[4:]

    def cat(values: pd.Series) -> pd.Categorical:
        return pd.Categorical(values.astype(str).to_numpy(),
                              categories=sorted(values.astype(str).unique()))

    obs = pd.DataFrame({"donor": cat(donor), "condition": cat(condition),
                        "cell_type": cat(cells["cluster_id"]), "sample": cat(cells["sample_id"])},
                       index=pd.Index(cells["barcode"].to_numpy(), name="barcode"))
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.uns["source"] = ("HelenaLC/muscat data/example_sce.rda @ "
                           "7d68329bf1cd13fc6cda2a8f857bf90a605200e9 (Kang et al. 2018, GSE96583)")
    OUT.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(OUT / "cells.h5ad", compression="gzip")
    print(f"{adata.n_obs} cells x {adata.n_vars} genes, {x.nnz} non-zeros -> {OUT / 'cells.h5ad'}")
    print(pd.crosstab(obs["cell_type"], obs["sample"]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
