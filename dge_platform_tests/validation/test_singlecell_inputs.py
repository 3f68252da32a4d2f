"""Single-cell study inputs: readers (h5ad, 10x MTX, 10x h5, cell sheets), value and metadata
checks, the donor guardrails and the biological samples derived from cells."""

from __future__ import annotations

import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from dge_platform.validation import validate_study
from dge_platform_tests.conftest import BUNDLED, FIXTURES, dge

TENX = FIXTURES / "tenx" / "3.0.0"
KANG = BUNDLED / "kang2018_pbmc"
CONTRAST = {"name": "stim_vs_ctrl", "factor": "condition", "level": "stim", "reference": "ctrl"}


def _config(**overrides) -> dict:
    config = {"id": "sc", "kind": "singlecell", "organism": "Homo sapiens",
              "counts": "cells.h5ad", "donor": "donor", "cell_type": "cell_type",
              "design": "~ donor + condition", "contrasts": [CONTRAST]}
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def _kang_study(folder: Path, adata: ad.AnnData | None = None, **overrides) -> Path:
    folder.mkdir(parents=True)
    if adata is None:
        shutil.copy(KANG / "cells.h5ad", folder / "cells.h5ad")
    else:
        adata.write_h5ad(folder / "cells.h5ad")
    (folder / "study.yaml").write_text(yaml.safe_dump(_config(**overrides)))
    return folder


def _messages(report) -> str:
    return "\n".join(str(p) for p in report.problems)


def test_kang_cells_become_samples_with_summed_counts(tmp_path):
    report = validate_study(_kang_study(tmp_path / "sc"))
    assert not report.problems, _messages(report)
    study = report.study
    cells = ad.read_h5ad(KANG / "cells.h5ad")
    assert sp.issparse(study.cells.X) and study.cells.n_obs == cells.n_obs == 1556
    assert list(study.samples.index) == ["d101_ctrl", "d101_stim", "d107_ctrl", "d107_stim"]
    assert list(study.samples.columns[:2]) == ["donor", "condition"]
    # Each sample's counts are its cells' counts summed.
    mask = (cells.obs["donor"] == "d107").to_numpy() & (cells.obs["condition"] == "stim").to_numpy()
    expected = np.asarray(cells.X[mask].sum(axis=0)).ravel().astype(np.int64)
    np.testing.assert_array_equal(study.counts["d107_stim"].to_numpy(), expected)
    assert study.counts.to_numpy().sum() == int(cells.X.sum())


def test_10x_mtx_folder_and_h5_read_the_same_matrix_with_a_cell_sheet(tmp_path):
    barcodes = pd.read_csv(TENX / "filtered_feature_bc_matrix" / "barcodes.tsv.gz",
                           header=None)[0]
    rng = np.random.default_rng(0)
    sheet = pd.DataFrame({"barcode": barcodes[:-7],  # 7 cells left without metadata
                          "donor": rng.choice(["d1", "d2", "d3"], len(barcodes) - 7),
                          "condition": rng.choice(["ctrl", "stim"], len(barcodes) - 7),
                          "cell_type": "T cells"})
    studies = {}
    for name, counts in (("mtx", "filtered_feature_bc_matrix"),
                         ("h5", "filtered_feature_bc_matrix.h5")):
        folder = tmp_path / name
        folder.mkdir()
        source = TENX / counts
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / counts)
        sheet.to_csv(folder / "cells.tsv", sep="\t", index=False)
        (folder / "study.yaml").write_text(yaml.safe_dump(_config(counts=counts,
                                                                  cells="cells.tsv")))
        report = validate_study(folder)
        assert not report.problems, _messages(report)
        assert any("7 cell(s)" in str(w) for w in report.warnings)
        studies[name] = report.study
    mtx, h5 = studies["mtx"], studies["h5"]
    assert mtx.cells.n_obs == len(barcodes) - 7 and mtx.cells.n_vars == 507
    assert list(mtx.cells.var_names) == list(h5.cells.var_names)
    assert mtx.cells.var_names[0].startswith("ENSG")
    assert (mtx.cells.X != h5.cells.X).nnz == 0
    pd.testing.assert_frame_equal(mtx.counts, h5.counts)
    assert mtx.cells.var["gene_symbol"].notna().all()


def test_cell_sheet_naming_unknown_cells_is_an_error(tmp_path):
    folder = tmp_path / "sc"
    folder.mkdir()
    shutil.copytree(TENX / "filtered_feature_bc_matrix", folder / "mtx")
    pd.DataFrame({"cell_id": ["AAAC-1", "GGGT-1"], "donor": ["d1", "d2"],
                  "condition": ["ctrl", "stim"], "cell_type": "T"}).to_csv(
        folder / "cells.csv", index=False)
    (folder / "study.yaml").write_text(yaml.safe_dump(_config(counts="mtx", cells="cells.csv")))
    text = _messages(validate_study(folder))
    assert "cells.csv: column 'cell_id': 2 of 2 cell id(s) are not in mtx" in text


def test_missing_donor_key_explains_why_cells_are_not_replicates(tmp_path):
    result = dge("validate", str(_kang_study(tmp_path / "sc", donor=None)))
    assert result.exit_code == 1
    assert "study.yaml: donor: required key is missing" in result.output
    assert "not independent replicates" in result.output


def test_one_donor_per_condition_is_an_error(tmp_path):
    cells = ad.read_h5ad(KANG / "cells.h5ad")
    cells = cells[cells.obs["donor"] == "d101"].copy()
    text = _messages(validate_study(_kang_study(tmp_path / "sc", cells)))
    assert "contrasts[0].level: group 'condition=stim' of contrast 'stim_vs_ctrl' has cells " \
           "from 1 donor(s)" in text
    assert "per-cell p-values would reflect the number of cells" in text


def test_metadata_columns_and_values_are_checked(tmp_path):
    cells = ad.read_h5ad(KANG / "cells.h5ad")
    cells.obs = cells.obs.rename(columns={"donor": "patient"})
    cells.obs.loc[cells.obs_names[:3], "condition"] = np.nan
    cells.X = cells.X * 0.5
    text = _messages(validate_study(_kang_study(tmp_path / "sc", cells)))
    assert "cells.h5ad: values: non-integer counts" in text
    cells.X = cells.X * 2
    text = _messages(validate_study(_kang_study(tmp_path / "sc2", cells)))
    assert "cells.h5ad: column 'donor': named by donor in study.yaml but missing" in text
    assert "cells.h5ad: column 'condition': empty for 3 cell(s)" in text


def test_cell_types_need_a_column_or_markers(tmp_path):
    text = _messages(validate_study(_kang_study(tmp_path / "sc", cell_type=None)))
    assert "study.yaml: cell_type: no cell type column and no markers" in text
    report = validate_study(_kang_study(tmp_path / "sc2", cell_type=None,
                                        markers={"B cells": ["ms4a1", "CD79A"]}))
    assert not report.problems, _messages(report)
    text = _messages(validate_study(_kang_study(tmp_path / "sc3", cell_type=None, markers={
        "B cells": ["MS4A1"], "Platelets": ["PPBP_X", "PF4_X"]})))
    assert text.endswith("study.yaml: markers.Platelets: none of PPBP_X, PF4_X is a gene of "
                         "cells.h5ad (matched on gene_symbol or gene id, any case) -> list "
                         "marker genes present in the matrix, or drop this cell type")


def test_singlecell_keys_are_refused_elsewhere_and_qc_keys_checked(tmp_path):
    from dge_platform_tests.conftest import write_study

    folder = write_study(tmp_path / "bulk", config={"donor": "donor", "markers": {"T": ["CD3E"]}})
    text = _messages(validate_study(folder))
    assert "study.yaml: donor: only used by kind: singlecell" in text
    assert "study.yaml: markers: only used by kind: singlecell" in text
    text = _messages(validate_study(_kang_study(tmp_path / "sc", qc={"max_pct_mito": 150,
                                                                      "nmad": 3})))
    assert "qc.max_pct_mito" in text and "qc.nmad: unknown key" in text


def test_numeric_donor_labels_stay_factors(tmp_path):
    cells = ad.read_h5ad(KANG / "cells.h5ad")
    cells.obs["donor"] = cells.obs["donor"].str.removeprefix("d")
    report = validate_study(_kang_study(tmp_path / "sc", cells))
    assert not report.problems, _messages(report)
    assert not [w for w in report.warnings if "donor" in str(w)]
