"""Points of departure from concentration-response fits: the gene filters, each POD's
statistic and its interval, the category rules (NTP 2018) and the cytotoxicity flag, on
hand-made fit tables whose answers are computed here independently."""

import numpy as np
import pandas as pd
import pytest

from dge_platform.screen.potency import (
    CategoryIndex,
    category_indices,
    compound_pods,
    compound_potency,
    qualifying,
)


def fits(bmd, *, compound="C", bmdl=None, bmdu=None, hitcall=0.99, fit_ok=True, ids=None):
    bmd = np.asarray(bmd, float)
    n = len(bmd)
    ids = ids or [f"G{i:03d}" for i in range(n)]
    return pd.DataFrame({
        "compound": compound, "gene_id": ids, "gene_symbol": [f"S{g[1:]}" for g in ids],
        "fit_ok": fit_ok, "hitcall": hitcall, "bmd": bmd,
        "bmdl": bmd / 2 if bmdl is None else bmdl, "bmdu": bmd * 2 if bmdu is None else bmdu,
        "ec50": bmd * 3, "lowest_dose": 0.01, "highest_dose": 10.0})


NO_SCORES = pd.DataFrame(columns=["compound", "collection", "source", "fit_ok", "hitcall",
                                  "bmd", "bmdl", "bmdu", "highest_dose"])


def test_qualifying_applies_each_ntp_filter():
    table = fits([1.0] * 7)
    table.loc[1, "fit_ok"] = False
    table.loc[2, "hitcall"] = 0.5
    table.loc[3, "bmd"] = 20.0          # above the highest dose
    table.loc[4, "bmdl"] = np.nan
    table.loc[5, "bmdu"] = 41 * table.loc[5, "bmdl"]  # BMDU / BMDL > 40
    assert qualifying(table).tolist() == [True, False, False, False, False, False, True]


def test_gene_pods_and_their_intervals():
    rng = np.random.default_rng(0)
    bmd = 10 ** rng.uniform(-2, 1, 60)
    bmdl, bmdu = bmd / rng.uniform(1.2, 3, 60), bmd * rng.uniform(1.2, 3, 60)
    table = fits(bmd, bmdl=bmdl, bmdu=bmdu)
    pods = compound_pods(table, NO_SCORES, []).set_index("pod_type")
    order = np.argsort(bmd)[:20]
    assert pods.loc["gene_tpod", "pod"] == pytest.approx(np.median(bmd[order]))
    assert pods.loc["gene_tpod", "pod_lower"] == pytest.approx(np.median(bmdl[order]))
    assert pods.loc["gene_tpod", "pod_upper"] == pytest.approx(np.median(bmdu[order]))
    assert pods.loc["gene_tpod", "n_genes"] == 20
    assert pods.loc["gene_p5", "pod"] == pytest.approx(np.percentile(bmd, 5))
    assert pods.loc["gene_p5", "pod_upper"] == pytest.approx(np.percentile(bmdu, 5))
    assert pods.loc["gene_p5", "n_genes"] == 60
    assert (pods["pod_lower"] <= pods["pod"]).all() and (pods["pod"] <= pods["pod_upper"]).all()
    assert compound_potency(table).loc[0, "tpod"] == pytest.approx(pods.loc["gene_tpod", "pod"])


def test_burst_finds_the_dose_where_most_genes_turn():
    rng = np.random.default_rng(1)
    burst = np.r_[10 ** rng.normal(np.log10(0.3), 0.05, 40), 10 ** rng.uniform(-2, 1, 20)]
    pods = compound_pods(fits(burst), NO_SCORES, []).set_index("pod_type")
    assert abs(np.log10(pods.loc["gene_burst", "pod"]) - np.log10(0.3)) < 0.1
    # The bounds' modes move with the bounds (here exactly a factor 2 either side).
    assert pods.loc["gene_burst", "pod_lower"] == pytest.approx(0.15, rel=0.1)
    assert pods.loc["gene_burst", "pod_upper"] == pytest.approx(0.6, rel=0.1)


def test_few_genes_give_only_the_pods_they_support():
    assert compound_pods(fits([1, 2, 3, 4]), NO_SCORES, []).empty
    few = compound_pods(fits([1, 2, 3, 4, 5, 6]), NO_SCORES, [])
    assert few["pod_type"].tolist() == ["gene_tpod"]
    reason = compound_potency(fits([1, 2, 3, 4])).loc[0, "reason"]
    assert "only 4 qualifying gene(s)" in reason


def test_category_rules_and_lowest_median():
    table = fits([0.1, 0.2, 0.3, 0.05, 0.06, 5.0, 6.0, 7.0])
    measured = pd.DataFrame({"gene_id": [f"G{i:03d}" for i in range(200)],
                             "gene_symbol": [f"S{i:03d}" for i in range(200)]})
    sets = {
        # 3 of 10 qualifying: median of 0.1, 0.2, 0.3
        "low": ["S000", "S001", "S002"] + [f"S{i:03d}" for i in range(100, 107)],
        # only 2 qualifying genes: below the 3-gene rule though its BMDs are lowest
        "two": ["S003", "S004", "S150"],
        # 3 qualifying of 100 measured members: 3 % < 5 %
        "diluted": ["S003", "S004", "S000"] + [f"S{i:03d}" for i in range(100, 197)],
        # high BMDs
        "high": ["S005", "S006", "S007"],
        "unmeasured": ["X1", "X2", "X3"],
    }
    pods = compound_pods(table, NO_SCORES,
                         category_indices([("Mine", "symbol", sets)], measured))
    category = pods[pods["pod_type"] == "category"].iloc[0]
    assert category["pod"] == pytest.approx(0.2)
    assert category["pod_lower"] == pytest.approx(0.1)
    assert category["pod_upper"] == pytest.approx(0.4)
    assert category["detail"] == "Mine: low (3 of 10 genes)"
    assert category["n_genes"] == 3


def test_category_index_by_gene_id_and_duplicate_symbols():
    index = CategoryIndex("Ids", {"s": ["G000", "G001", "G002", "G009"]},
                          {f"G{i:03d}" for i in range(10)})
    genes = fits([1.0, 2.0, 3.0]).set_index("gene_id")
    assert index.lowest(genes)["pod"] == pytest.approx(2.0)
    assert index.lowest(genes.iloc[:2]) is None


def test_pathway_score_pod_and_cytotoxic_flag():
    scores = pd.DataFrame({"compound": "C", "collection": ["PROGENy", "Hallmark", "PROGENy"],
                           "source": ["p53", "HALLMARK_P53_PATHWAY", "EGFR"],
                           "fit_ok": [True, True, False], "hitcall": [0.95, 0.99, 0.99],
                           "bmd": [0.5, 0.8, 0.01], "bmdl": [0.2, 0.5, 0.005],
                           "bmdu": [1.0, 1.5, 0.02], "highest_dose": 10.0})
    pods = compound_pods(fits(np.linspace(0.4, 4, 30)), scores, [],
                         cytotoxic_dose=pd.Series({"C": 1.0}))
    score = pods[pods["pod_type"] == "pathway_score"].iloc[0]
    assert (score["pod"], score["pod_lower"], score["pod_upper"]) == (0.5, 0.2, 1.0)
    assert score["detail"] == "PROGENy: p53"
    flagged = pods.set_index("pod_type")["flags"]
    # p53's BMD 0.5 is below the cytotoxic dose 1.0; the tPOD (median of the 20 lowest of
    # 0.4..4 in 30 steps, 1.58) is above it; the 5th percentile (0.58) below.
    assert flagged["pathway_score"] == "" and flagged["gene_p5"] == ""
    assert flagged["gene_tpod"] == "above_cytotoxic_dose"
    assert ((pods["pod"] >= 1.0) == (pods["flags"] == "above_cytotoxic_dose")).all()


def test_planted_pathway_is_the_lowest_category_at_its_planted_bmd():
    """A pathway of 40 genes turning at a low dose (Hill, known BMDs) among 300 responsive
    genes turning later and 300 null genes: fitted by the engine, the lowest category is
    the planted one, its POD within 0.2 log10 of the median of its genes' true BMDs."""
    from dge_platform.screen.concentration_response import fit_concentration_response

    rng = np.random.default_rng(7)
    levels = 10 * 3.0 ** -np.arange(6)[::-1]
    doses = pd.Series(np.r_[np.zeros(12), np.repeat(levels, 3)])
    doses.index = [f"w{i:02d}" for i in range(len(doses))]
    sigma, n_path, n_late, n_null = 0.3, 40, 300, 300
    ga = np.r_[np.full(n_path, levels[1]), 10 ** rng.uniform(np.log10(levels[3]),
                                                             np.log10(levels[5]), n_late)]
    p = rng.uniform(1.5, 3, n_path + n_late)
    tp = rng.uniform(8, 14, n_path + n_late) * sigma * rng.choice([-1, 1], n_path + n_late)
    d = doses.to_numpy()
    curves = tp[:, None] * d ** p[:, None] / (ga[:, None] ** p[:, None] + d ** p[:, None])
    values = 8 + np.vstack([curves, np.zeros((n_null, len(d)))]) \
        + rng.normal(0, sigma, (n_path + n_late + n_null, len(d)))
    genes = [f"G{i:04d}" for i in range(len(values))]
    expression = pd.DataFrame(values, index=genes, columns=doses.index)
    u = 1.349 * sigma / np.abs(tp)
    true_bmd = ga * (u / (1 - u)) ** (1 / p)
    fits = fit_concentration_response(expression, doses,
                                      control_sd=pd.Series(sigma, index=genes))
    table = fits.rename_axis("gene_id").reset_index().assign(
        compound="C", gene_symbol=lambda t: t["gene_id"])
    measured = pd.DataFrame({"gene_id": genes, "gene_symbol": genes})
    sets = {"planted": genes[:n_path] + genes[-10:]}  # 40 of 50 members respond
    for i in range(200):  # random sets of late genes and null genes
        sets[f"random{i}"] = list(rng.choice(genes[n_path:], 30, replace=False))
    pods = compound_pods(table, NO_SCORES,
                         category_indices([("Sets", "ensembl", sets)], measured))
    category = pods[pods["pod_type"] == "category"].iloc[0]
    assert category["detail"].startswith("Sets: planted (")
    planted_bmd = np.median(true_bmd[:n_path])
    assert abs(np.log10(category["pod"] / planted_bmd)) <= 0.2
    assert category["pod_lower"] <= planted_bmd <= category["pod_upper"]
