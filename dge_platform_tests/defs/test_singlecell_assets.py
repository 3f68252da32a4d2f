"""Single-cell studies through `dge add` + `dge run`: cell QC, pseudobulks, per-cell-type
DESeq2 against R DESeq2 1.38 on the same pseudobulks (fixtures/r_deseq2/
make_r_pseudobulk_reference.R), the known IFN-beta biology of the real Kang 2018 PBMC subset,
marker-based annotation, exploratory markers and the catalog tables."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from dge_platform_tests._helpers import explorer_panels
from dge_platform_tests.conftest import BUNDLED, FIXTURES, dge, sql

R_DESEQ2 = FIXTURES / "r_deseq2"
CONTRAST = {"name": "stim_vs_ctrl", "factor": "condition", "level": "stim", "reference": "ctrl"}
# Canonical type I interferon-stimulated genes present in the Kang subset.
ISGS = {"ISG15", "IFI6", "IFIT1", "IFIT2", "IFIT3", "MX1", "MX2", "OAS1", "OAS2", "OAS3",
        "OASL", "ISG20", "IFITM3", "LY6E", "RSAD2", "IFI44", "IFI44L", "IFI27", "IFI35", "IRF7",
        "STAT1", "HERC5", "XAF1", "CXCL10", "CXCL11", "EPSTI1", "BST2", "CMPK2", "APOBEC3A"}


def _study(folder: Path, cells: Path, **config) -> None:
    folder.mkdir(parents=True)
    shutil.copy(cells, folder / "cells.h5ad")
    base = {"id": folder.name, "kind": "singlecell", "organism": "Homo sapiens",
            "counts": "cells.h5ad", "donor": "donor", "cell_type": "cell_type",
            "design": "~ donor + condition", "contrasts": [CONTRAST]}
    base.update(config)
    (folder / "study.yaml").write_text(yaml.safe_dump({k: v for k, v in base.items()
                                                       if v is not None}))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Two single-cell studies in one batched run: the simulated fixture cells with QC
    relaxed (so pseudobulks are the fixture's) and the bundled Kang study."""
    root = tmp_path_factory.mktemp("home")
    incoming = root / "incoming"
    _study(incoming / "sim_sc", R_DESEQ2 / "singlecell_sim_cells.h5ad",
           qc={"doublets": False, "nmads": 100, "mito_nmads": 100})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root / "dge"))
        for folder in (incoming / "sim_sc", BUNDLED / "kang2018_pbmc"):
            result = dge("add", str(folder))
            assert result.exit_code == 0, result.output
        result = dge("run")
        assert result.exit_code == 0, result.output
        yield result.output


def _pseudobulk_fixture(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = pd.read_csv(R_DESEQ2 / f"pseudobulk_{name}_counts.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(R_DESEQ2 / f"pseudobulk_{name}_samples.tsv", sep="\t")
    return counts, samples


def test_pseudobulk_sums_equal_a_direct_aggregation(catalog):
    counts, samples = _pseudobulk_fixture("sim")
    ours = sql("select pseudobulk_sample, gene_id, count from pseudobulk_counts "
               "where study_id = 'sim_sc'")
    wide = ours.pivot(index="gene_id", columns="pseudobulk_sample", values="count")
    assert sorted(wide.columns) == sorted(samples["pseudobulk_sample"])
    np.testing.assert_array_equal(wide.loc[counts.index, counts.columns].to_numpy(),
                                  counts.to_numpy())
    stored = sql("select pseudobulk_sample, n_cells from pseudobulk_samples "
                 "where study_id = 'sim_sc'").set_index("pseudobulk_sample")["n_cells"]
    assert stored.loc[samples["pseudobulk_sample"]].tolist() == samples["n_cells"].tolist()


def test_pseudobulks_use_only_cells_that_passed_qc(catalog):
    """Kang with default QC: doublets are removed, and each pseudobulk is the sum of its
    passed cells, checked against the raw h5ad directly."""
    qc = sql("select cell_id, passed from cell_qc where study_id = 'kang2018_pbmc'")
    cells = ad.read_h5ad(BUNDLED / "kang2018_pbmc" / "cells.h5ad")
    assert len(qc) == cells.n_obs and 0 < (~qc["passed"]).sum() < 0.05 * len(qc)
    passed = set(qc.loc[qc["passed"], "cell_id"])
    mask = (cells.obs_names.isin(list(passed)) & (cells.obs["cell_type"] == "B cells").to_numpy()
            & (cells.obs["donor"] == "d107").to_numpy()
            & (cells.obs["condition"] == "stim").to_numpy())
    direct = pd.Series(np.asarray(cells.X[mask].sum(axis=0)).ravel(), index=cells.var_names)
    ours = sql("select gene_id, count from pseudobulk_counts where study_id = 'kang2018_pbmc' "
               "and pseudobulk_sample = 'B cells|d107|stim'").set_index("gene_id")["count"]
    np.testing.assert_array_equal(ours.loc[direct.index].to_numpy(), direct.to_numpy())
    n_cells = sql("select n_cells from pseudobulk_samples where study_id = 'kang2018_pbmc' and "
                  "pseudobulk_sample = 'B cells|d107|stim'")["n_cells"][0]
    assert n_cells == mask.sum()


def _against_r(study: str, name: str) -> pd.DataFrame:
    ours = sql(f"select cell_type, gene_id, base_mean, log2_fold_change, padj from deg_results "
               f"where study_id = '{study}'")
    r = pd.read_csv(R_DESEQ2 / f"pseudobulk_{name}_r_results.csv.gz")
    merged = ours.merge(r, on=["cell_type", "gene_id"], suffixes=("", "_r"))
    assert len(merged) == len(r) == len(ours)
    return merged


def test_pseudobulk_de_agrees_with_r_deseq2(catalog):
    merged = _against_r("sim_sc", "sim")
    for cell_type, rows in merged.groupby("cell_type"):
        expressed = rows[rows["base_mean_r"] >= 10].dropna(subset=["log2_fold_change_r"])
        r = np.corrcoef(expressed["log2_fold_change"], expressed["log2_fold_change_r"])[0, 1]
        assert r >= 0.99, (cell_type, r)
        ours = set(rows.loc[rows["padj"] < 0.05, "gene_id"])
        theirs = set(rows.loc[rows["padj_r"] < 0.05, "gene_id"])
        assert len(theirs) >= 20
        assert len(ours & theirs) / len(ours | theirs) >= 0.95, cell_type


def test_kang_pseudobulk_de_on_the_same_matrix_agrees_with_r():
    """The R fixture's Kang pseudobulks (all cells) through the platform's pseudobulk DE.
    Two donors leave one residual degree of freedom, where R estimates the dispersion prior
    by simulation (replayed exactly): fold changes and DEG sets must match R. In B cells R's
    parametric dispersion trend fails and R switches to a locfit trend, which the platform
    does not have (it falls back to the mean, as PyDESeq2): fold changes only there."""
    from dge_platform.singlecell.de import pseudobulk_de
    from dge_platform.singlecell.pseudobulk import Pseudobulk
    from dge_platform.study.config import Contrast

    counts, samples = _pseudobulk_fixture("kang")
    pb = Pseudobulk(counts, samples.set_index("pseudobulk_sample"), "cell_type")
    ours, skipped = pseudobulk_de(pb, "~ donor + condition", [Contrast(**CONTRAST)])
    assert not skipped
    r = pd.read_csv(R_DESEQ2 / "pseudobulk_kang_r_results.csv.gz")
    merged = ours.merge(r, on=["cell_type", "gene_id"], suffixes=("", "_r"))
    assert len(merged) == len(r) == len(ours) == 5 * 1267
    for cell_type, rows in merged.groupby("cell_type"):
        expressed = rows[rows["base_mean_r"] >= 10].dropna(subset=["log2_fold_change_r"])
        corr = np.corrcoef(expressed["log2_fold_change"], expressed["log2_fold_change_r"])[0, 1]
        assert corr >= 0.99, (cell_type, corr)
        if cell_type != "B cells":
            ours_calls = set(rows.loc[rows["padj"] < 0.05, "gene_id"])
            r_calls = set(rows.loc[rows["padj_r"] < 0.05, "gene_id"])
            assert len(ours_calls & r_calls) / len(ours_calls | r_calls) >= 0.95, cell_type


def test_interferon_stimulated_genes_top_stimulated_monocytes(catalog):
    top = sql("select gene_symbol, log2_fold_change, padj from deg_results where study_id = "
              "'kang2018_pbmc' and cell_type = 'CD14+ Monocytes' and padj < 0.05 "
              "and log2_fold_change > 0 order by stat desc limit 20")
    assert len(top) == 20
    assert len(ISGS & set(top["gene_symbol"])) >= 10, top["gene_symbol"].tolist()
    assert set(top["gene_symbol"].head(5)) & {"ISG15", "IFIT3", "IFIT1", "MX1", "IFI6", "ISG20"}
    # IFN-beta induces the same programme in every cell type.
    isg15 = sql("select cell_type, log2_fold_change, padj from deg_results where study_id = "
                "'kang2018_pbmc' and gene_symbol = 'ISG15'")
    assert len(isg15) == 5 and (isg15["log2_fold_change"] > 2).all()
    assert (isg15["padj"] < 0.05).all()


def test_marker_annotation_recovers_the_authors_cell_types():
    """Kang without its labels: Leiden clusters on the Harmony embedding, named by the
    study.yaml markers, agree with the authors' annotation."""
    from dge_platform.singlecell.embedding import annotate_clusters, embed_cells

    cells = ad.read_h5ad(BUNDLED / "kang2018_pbmc" / "cells.h5ad")
    markers = yaml.safe_load((BUNDLED / "kang2018_pbmc" / "study.yaml").read_text())["markers"]
    embedded = embed_cells(cells, integrate_key="donor", seed=0)
    labels, scores = annotate_clusters(embedded, markers)
    agreement = (labels.astype(str).to_numpy() == cells.obs["cell_type"].astype(str)).mean()
    assert agreement >= 0.8, scores


def test_catalog_tables_of_a_singlecell_study(catalog):
    qc = sql("select * from cell_qc where study_id = 'kang2018_pbmc'")
    assert {"study_id", "cell_id", "donor", "total_counts", "n_genes", "pct_mito",
            "doublet_score", "passed", "reason"} <= set(qc.columns)
    assert (qc.loc[~qc["passed"], "reason"] != "").all()
    assert (qc.loc[qc["passed"], "reason"] == "").all()
    markers = sql("select * from marker_genes where study_id = 'kang2018_pbmc'")
    assert markers["exploratory"].all() and set(markers["method"]) == {"wilcoxon_per_cell"}
    cd14 = markers[markers["cell_type"] == "CD14+ Monocytes"].nsmallest(20, "rank")
    assert {"CD14", "LYZ", "S100A8", "S100A9"} & set(cd14["gene_symbol"])
    degs = sql("select cell_type, count(*) n from deg_results where study_id = 'kang2018_pbmc' "
               "group by 1")
    assert len(degs) == 5 and (degs["n"] == 1267).all()
    enrichment = sql("select distinct cell_type from enrichment where study_id = "
                     "'kang2018_pbmc'")
    assert len(enrichment) == 5
    types = sql("select cell_type, cell_type_source, count(*) n from cell_types "
                "where study_id = 'kang2018_pbmc' group by all")
    assert set(types["cell_type_source"]) == {"input"} and types["n"].sum() == qc["passed"].sum()
    kinds = sql("select kind, n_samples from studies where study_id = 'kang2018_pbmc'")
    assert kinds.to_dict("records") == [{"kind": "singlecell", "n_samples": 4}]


def test_run_summary_lists_degs_per_cell_type(catalog):
    line = next(text for text in catalog.splitlines()
                if text.strip().startswith("kang2018_pbmc") and "CD14+ Monocytes" in text)
    assert "stim_vs_ctrl" in line
    report = Path(next(text for text in catalog.splitlines()
                       if text.startswith("Report kang2018_pbmc:")).split(": ", 1)[1])
    html = report.read_text()
    qc = sql("select count(*) n, count(*) filter (where passed) passed from cell_qc "
             "where study_id = 'kang2018_pbmc'").iloc[0]
    assert "single-cell report" in html
    assert f"Cell QC ({qc['passed']:,} of {qc['n']:,} cells passed)" in html
    assert html.count("<h3>stim_vs_ctrl: ") == 5 and "Marker genes (exploratory)" in html
    # The DEG explorer: one panel per contrast x cell type, each of its tested genes
    options = re.findall(r"<option value='\d+'>([^<]+)</option>", html)
    assert len(options) == 5 and "stim_vs_ctrl: CD14+ Monocytes" in options
    tested = sql("select count(*) n from deg_results where study_id = 'kang2018_pbmc' and "
                 "cell_type = 'CD14+ Monocytes' and padj is not null")["n"].item()
    table = explorer_panels(html)[options.index("stim_vs_ctrl: CD14+ Monocytes")]["table"]
    assert len(table["columns"][0]) == tested


def test_cross_study_tables_are_refreshed_after_the_run(catalog):
    """`dge run` refreshes the cross-study tables once after the studies' runs."""
    assert "cross-study: ok" in catalog
    isg15 = sql("select * from gene_recurrence where gene_key = 'ISG15'").iloc[0]
    # Kang: up in all 5 cell types; the simulated study has no ISG15.
    assert (isg15["n_studies"], isg15["n_contrasts"], isg15["n_up"]) == (1, 5, 5)
    top = sql("select cell_type, neighbor_cell_type, correlation from contrast_similarity "
              "where study_id = 'kang2018_pbmc' and rank = 1").set_index("cell_type")
    # The two monocyte types respond most alike to IFN-beta.
    assert top.loc["CD14+ Monocytes", "neighbor_cell_type"] == "FCGR3A+ Monocytes"
    assert top.loc["CD14+ Monocytes", "correlation"] > 0.8


def test_signature_search_ranks_the_interferon_response_first(catalog):
    query = ["--up", "ISG15,IFIT1,IFIT3,MX1,IFI6,OAS1,ISG20,LY6E", "--down", "IL1B,VCAN"]
    result = dge("signature-search", *query, "--permutations", "200", "--format", "json")
    assert result.exit_code == 0, result.output
    ranked = pd.read_json(io.StringIO(result.output))
    top = ranked.head(2)
    assert set(top["cell_type"]) == {"CD14+ Monocytes", "FCGR3A+ Monocytes"}
    assert (top["score"] > 0.9).all() and (top["fdr"] < 0.05).all()
    self_query = dge("signature-search", "--study", "kang2018_pbmc", "--contrast",
                     "stim_vs_ctrl", "--cell-type", "CD14+ Monocytes", "--permutations", "200",
                     "--format", "json")
    first = pd.read_json(io.StringIO(self_query.output)).iloc[0]
    assert first["cell_type"] == "CD14+ Monocytes" and first["score"] > 0.9
    missing = dge("signature-search", "--study", "kang2018_pbmc", "--contrast", "stim_vs_ctrl")
    assert missing.exit_code == 1 and "choose one of" in missing.output


def test_interferon_beta_activates_jak_stat_in_every_cell_type(catalog):
    table = sql("select cell_type, source, score, padj from pathway_activity "
                "where study_id = 'kang2018_pbmc' and contrast = 'stim_vs_ctrl'")
    top = table.loc[table.groupby("cell_type")["score"].idxmax()].set_index("cell_type")
    assert (top["source"] == "JAK-STAT").all() and len(top) == 5
    assert (top["padj"] < 1e-6).all()
    assert top.loc["CD14+ Monocytes", "score"] > 10


def test_interferon_beta_puts_irf_and_stat_tfs_on_top_in_every_cell_type(catalog):
    """CollecTRI (shipped) with ulm: the interferon-stimulated regulators (IRF1/3/7/9,
    STAT1/2) lead every cell type's TFs."""
    table = sql("select cell_type, source, score, padj from tf_activity "
                "where study_id = 'kang2018_pbmc' and contrast = 'stim_vs_ctrl'")
    top = table.sort_values("score", ascending=False).groupby("cell_type").head(3)
    assert top["cell_type"].nunique() == 5
    assert top["source"].str.fullmatch(r"IRF[1379]|STAT[12]").all()
    assert (top["padj"] < 1e-4).all()


def test_sample_scores_are_per_pseudobulk_within_cell_type(catalog):
    scores = sql("select s.sample, s.cell_type, p.cell_type as pb_cell_type, s.collection, "
                 "s.source, s.score from sample_scores s join pseudobulk_samples p "
                 "on s.study_id = p.study_id and s.sample = p.pseudobulk_sample "
                 "where s.study_id = 'kang2018_pbmc'")
    assert len(scores) and (scores["cell_type"] == scores["pb_cell_type"]).all()
    jak = scores[(scores["source"] == "JAK-STAT") & scores["sample"].str.contains("stim")]
    assert (jak["score"] > 0).all()  # stimulated pseudobulks above their cell type's mean
