"""A simulated two-plate screen (`~ plate + condition`, 40 compound x dose contrasts vs DMSO)
through `dge add --run`, against R DESeq2 1.38 on the same counts (fixture made by
fixtures/r_deseq2/make_r_screen_reference.R)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from dge_platform_tests.conftest import FIXTURES, dge, sql

R_DESEQ2 = FIXTURES / "r_deseq2"


@pytest.fixture(scope="module")
def screen_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("home")
    study = root / "incoming" / "r_screen"
    study.mkdir(parents=True)
    shutil.copy(R_DESEQ2 / "screen_counts.tsv.gz", study / "counts.tsv.gz")
    shutil.copy(R_DESEQ2 / "screen_plate_map.tsv", study / "plate_map.tsv")
    (study / "study.yaml").write_text(yaml.safe_dump({
        "id": "r_screen", "kind": "screen", "organism": "Homo sapiens",
        "counts": "counts.tsv.gz", "plate_map": "plate_map.tsv", "control": "DMSO"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root / "dge"))
        result = dge("add", str(study), "--run")
        assert result.exit_code == 0, result.output
        ours = sql("select contrast, gene_id, base_mean, log2_fold_change, padj "
                   "from deg_results where study_id = 'r_screen'")
        factors = sql("select sample, size_factor from size_factors")
        failed = sql("select count(*) n from well_qc where not passed")["n"][0]
    r = pd.read_csv(R_DESEQ2 / "screen_results.csv.gz")
    merged = ours.merge(r, on=["contrast", "gene_id"], suffixes=("", "_r"))
    return merged, factors, failed, len(ours), len(r)


def test_every_well_and_contrast_analysed(screen_results):
    merged, _, failed, n_ours, n_r = screen_results
    assert failed == 0
    assert n_ours == n_r == 40 * 2000 and len(merged) == n_r


def test_size_factors_match_r(screen_results):
    _, factors, _, _, _ = screen_results
    r = pd.read_csv(R_DESEQ2 / "screen_size_factors.csv").set_index("sample")["size_factor"]
    np.testing.assert_allclose(factors.set_index("sample")["size_factor"].loc[r.index], r,
                               rtol=1e-8)


def test_fold_changes_and_calls_agree_with_r(screen_results):
    merged = screen_results[0]
    expressed = merged[merged["base_mean"] >= 10]
    r_per_contrast = expressed.groupby("contrast").apply(
        lambda t: np.corrcoef(t["log2_fold_change"], t["log2_fold_change_r"])[0, 1],
        include_groups=False)
    assert r_per_contrast.median() >= 0.999 and r_per_contrast.min() >= 0.99
    ours, theirs = merged["padj"] < 0.05, merged["padj_r"] < 0.05
    jaccard = (ours & theirs).sum() / (ours | theirs).sum()
    print(f"\nscreen: DEGs R {theirs.sum()} ours {ours.sum()}; Jaccard {jaccard:.4f}")
    assert theirs.sum() > 500 and jaccard >= 0.95
