"""The screen asset chain through `dge add --run`: the real MAC-seq plate and a simulated
two-plate screen with planted effects, checked through SQL on the catalog."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from dge_platform.pipelines.step import file_stem
from dge_platform.sim.screen import simulate_screen, write_screen_study
from dge_platform.storage.tables import TABLES
from dge_platform_tests._helpers import explorer_panels
from dge_platform_tests.conftest import copy_bundled, dge, sql


@pytest.fixture(scope="module")
def screen_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root / "dge"))
        macseq = dge("add", str(copy_bundled("macseq_pmmsq033", root / "incoming")), "--run")
        screen = simulate_screen(n_genes=1500, n_plates=2, n_compounds=6,
                                 doses=(0.01, 0.1, 1.0, 10.0), n_controls=12, n_replicates=2,
                                 frac_responsive=0.08, seed=3, moa_groups=2,
                                 n_combinations=2)
        write_screen_study(root / "incoming" / "sim_screen", screen, "sim_screen")
        simulated = dge("add", str(root / "incoming" / "sim_screen"), "--run")
        yield {"root": root / "dge", "macseq": macseq, "sim": simulated, "truth": screen}


@pytest.fixture
def home(screen_home, monkeypatch):
    monkeypatch.setenv("DGE_HOME", str(screen_home["root"]))
    return screen_home


def test_runs_succeed(home):
    for key in ("macseq", "sim"):
        assert home[key].exit_code == 0, home[key].output


def test_well_qc_table(home):
    qc = sql("select * from well_qc where study_id = 'macseq_pmmsq033' order by sample")
    assert list(qc.columns) == [c for c, _ in TABLES["well_qc"].columns]
    assert len(qc) == 384
    empty = qc.set_index("well").loc["K01"]  # the plate's one all-zero well
    assert empty["total_counts"] == 0 and not empty["passed"] and empty["reason"]
    assert set(qc["row"]) == set("ABCDEFGHIJKLMNOP") and qc["column"].max() == 24
    plots = home["root"] / "warehouse" / "screen_plots" / "study_id=macseq_pmmsq033"
    assert (plots / "plate_PMMSq033_depth.png").read_bytes()[:4] == b"\x89PNG"


def test_screen_deg_results_cover_every_tested_condition(home):
    degs = sql("select contrast, compound, dose, count(*) n from deg_results "
               "where study_id = 'macseq_pmmsq033' group by all")
    tested = sql("select count(distinct condition) n from samples s join well_qc q using "
                 "(study_id, sample) where s.study_id = 'macseq_pmmsq033' and role = 'sample' "
                 "and passed")
    assert len(degs) == tested["n"][0] and (degs["n"] == 1000).all()
    etoposide = degs.set_index("contrast").loc["ETOPOSIDE_10uM"]
    assert etoposide["compound"] == "ETOPOSIDE" and etoposide["dose"] == 10.0
    analysed = sql("select count(*) n from size_factors where study_id = 'macseq_pmmsq033'")
    passed = sql("select count(*) n from samples s join well_qc q using (study_id, sample) "
                 "where s.study_id = 'macseq_pmmsq033' and role in ('sample', 'control') "
                 "and passed")
    assert analysed["n"][0] == passed["n"][0]


def test_activity_calls_match_deg_counts_and_null(home):
    calls = sql("select * from compound_activity where study_id = 'macseq_pmmsq033'")
    degs = sql("select contrast, count(*) filter (where padj < 0.05) n from deg_results "
               "where study_id = 'macseq_pmmsq033' group by contrast")
    merged = calls.merge(degs, on="contrast")
    assert len(merged) == len(calls) == len(degs)
    assert (merged["n_deg"] == merged["n"]).all()
    assert (calls["active"] == (calls["n_deg"] > calls["null_threshold"])).all()
    assert (calls["n_null_splits"] == 200).all() and calls["null_threshold"].nunique() == 1


def test_simulated_screen_activity_follows_the_truth(home):
    truth = home["truth"]
    calls = sql("select * from compound_activity where study_id = 'sim_screen' "
                "and compound not like '% + %'")
    assert len(calls) == 6 * 4
    inactive = truth.ec50.index[truth.ec50.isna()]
    assert not calls.loc[calls["compound"].isin(inactive), "active"].any()
    # top dose of every active compound clears the null
    top = calls[~calls["compound"].isin(inactive) & (calls["dose"] == 10.0)]
    assert top["active"].all()


def test_simulated_screen_blocks_on_plate(home):
    studies = sql("select design, batch from studies where study_id = 'sim_screen'")
    assert studies["design"][0] == "~ plate + condition" and studies["batch"][0] == "plate"


def test_similarity_neighbours_are_other_compounds(home):
    table = sql("select * from compound_similarity where study_id = 'macseq_pmmsq033'")
    assert list(table.columns) == [c for c, _ in TABLES["compound_similarity"].columns]
    if len(table):
        assert (table["compound"] != table["neighbor_compound"]).all()
        active = sql("select contrast from compound_activity where study_id = "
                     "'macseq_pmmsq033' and active")
        assert set(table["contrast"]) <= set(active["contrast"])


def test_dose_response_recovers_planted_ec50s(home):
    """Planted Hill responses (4 doses, 2 wells each, 2 plates): per compound, the median EC50
    of its responsive genes lies within 0.2 log10 (1.6-fold) of the planted EC50, single genes
    within 0.35 log10 in the median; inactive compounds get no fits. At ~20 UMIs per gene and
    well, tcplfit2's gate (a per-dose median beyond 3 control MADs) leaves the weakest
    planted genes unfitted: about 40 % of them get a Hill EC50 within the doses."""
    truth = home["truth"]
    fits = sql("select compound, gene_id, ec50 from dose_response where study_id = 'sim_screen'")
    active = truth.ec50.dropna()
    assert set(fits["compound"]) == set(active.index)
    for compound, planted in active.items():
        genes = fits[(fits["compound"] == compound)
                     & fits["gene_id"].map(truth.responsive[compound]) & fits["ec50"].notna()]
        assert len(genes) >= 0.3 * truth.responsive[compound].sum()
        errors = np.log10(genes["ec50"] / planted)
        assert abs(np.log10(genes["ec50"].median() / planted)) <= 0.2, compound
        assert np.median(np.abs(errors)) <= 0.35, compound


def test_potency_ranks_compounds_like_their_planted_ec50(home):
    truth = home["truth"]
    potency = sql("select compound, tpod from compound_potency where study_id = 'sim_screen'")
    tpod = potency.set_index("compound")["tpod"]
    planted = truth.ec50.dropna()
    assert tpod.notna().all() and set(tpod.index) == set(planted.index)
    # the two clearly separated potency classes (~0.02 vs ~0.2-0.4 uM) are ordered
    potent, weak = planted.index[planted < 0.05], planted.index[planted > 0.1]
    assert tpod[potent].max() < tpod[weak].min()


def test_run_summary_reports_activity_per_screen(home):
    output = home["macseq"].output
    calls = sql("select * from compound_activity where study_id = 'macseq_pmmsq033' "
                "order by n_deg desc")
    active = calls[calls["active"]]
    line = (f"macseq_pmmsq033: {len(active)} of {len(calls)} active (null 95th percentile "
            f"{calls['null_threshold'].max():g} DEGs)")
    assert line in output
    assert f"{active['contrast'].iloc[0]} ({active['n_deg'].iloc[0]})" in output
    assert "ETOPOSIDE_10uM" not in output.split("DuckDB catalog")[0].split("Screens:")[0]
    summary = sql("select * from combinations where study_id = 'sim_screen'")
    assert (f"sim_screen: {int(summary['nonadditive'].sum())} of {len(summary)}"
            in home["sim"].output.split("Combinations non-additive")[1])


def test_plate_losing_its_controls_in_qc_fails_and_keeps_previous_results(tmp_path,
                                                                          monkeypatch):
    from dge_platform_tests.conftest import write_screen

    monkeypatch.setenv("DGE_HOME", str(tmp_path / "dge"))
    folder = write_screen(tmp_path / "incoming" / "toy_screen", n_genes=200)
    assert dge("add", str(folder), "--run").exit_code == 0
    before = sql("select * from deg_results order by contrast, gene_id")
    counts = pd.read_csv(folder / "counts" / "p1.tsv", sep="\t", index_col=0)
    counts[["P1_A01", "P1_A02", "P1_A03"]] = 0
    counts.loc[counts.index[0], ["P1_A01", "P1_A02", "P1_A03"]] = 1  # dead but not empty
    counts.to_csv(folder / "counts" / "p1.tsv", sep="\t")
    result = dge("add", str(folder), "--run")
    assert result.exit_code == 1
    assert ("plate 'P1' has 3 control well(s) (DMSO) that passed well QC; at least 4 are "
            "needed") in result.output
    pd.testing.assert_frame_equal(sql("select * from deg_results order by contrast, gene_id"),
                                  before)


def test_screen_report(home):
    report = (home["root"] / "warehouse" / "reports" / "study_id=macseq_pmmsq033"
              / "report.html")
    assert f"Report macseq_pmmsq033: {report}" in home["macseq"].output
    html = report.read_text()
    calls = sql("select * from compound_activity where study_id = 'macseq_pmmsq033'")
    assert f"Activity ({int(calls['active'].sum())} of {len(calls)} conditions active)" in html
    # The DEG explorer: the conditions active or with DEGs, the most DEGs first
    explored = calls[calls["active"] | (calls["n_deg"] > 0)]
    options = re.findall(r"<option value='\d+'>([^<]+)</option>", html)
    assert sorted(options) == sorted(explored["contrast"]) and len(options) >= 2
    assert options[0] == explored.sort_values("n_deg")["contrast"].iloc[-1]
    panels = explorer_panels(html)
    tested = sql("select count(*) n from deg_results where study_id = 'macseq_pmmsq033' "
                 f"and contrast = '{options[0]}' and padj is not null")["n"].item()
    assert len(panels) == len(options) and len(panels[0]["table"]["columns"][0]) == tested
    # plate heatmaps (depth, genes, failed, n_cov5, Gini), similarity, PC associations,
    # pathway activity, TF activity + top hits, position effects, the POD summary and the
    # curves of each compound with hits
    warehouse = home["root"] / "warehouse"
    curves = [p.stem for folder in ("dose_response_plots", "pathway_dose_plots")
              for p in (warehouse / folder / "study_id=macseq_pmmsq033").glob("curves_*.png")]
    assert "curves_CAMPTOTHECIN_genes" in curves
    assert html.count("<img alt=") == 5 + 1 + 1 + 1 + 2 + 1 + 1 + len(curves)
    for name in ("pod_summary", "position_effects", "plate_PMMSq033_n_cov5",
                 "plate_PMMSq033_gini", *curves):
        assert f'<img alt="{name}"' in html, name
    assert ">Design diagnostics</h2>" in html
    assert ">Pathway and TF activity</h2>" in html
    assert ">Potency and points of departure</h2>" in html
    assert ">Plate position effects (control wells)</h2>" in html
    assert ">Mechanism of action</h2>" in html and "Combinations (" not in html


def test_screen_report_shows_combinations(home):
    html = (home["root"] / "warehouse" / "reports" / "study_id=sim_screen"
            / "report.html").read_text()
    summary = sql("select * from combinations where study_id = 'sim_screen'")
    assert (f">Combinations ({int(summary['nonadditive'].sum())} of {len(summary)} "
            "non-additive)</h2>") in html
    for name in ("class_counts", *[f"combination_{file_stem(c)}" for c in summary["combination"]]):
        assert f'<img alt="{name}"' in html, name
    assert ">Consistency of MoA classes</h3>" in html


def test_enrichment_runs_gsea_for_active_conditions_only(home):
    methods = sql("select e.contrast, list(distinct e.method order by e.method) methods, "
                  "any_value(a.active) active from enrichment e join compound_activity a "
                  "using (study_id, contrast) where e.study_id = 'macseq_pmmsq033' group by 1")
    assert len(methods) == 78
    for row in methods.itertuples():
        assert ("gsea_prerank" in row.methods) == bool(row.active), row.contrast
        assert {"ora_up", "ora_down"} <= set(row.methods)


def test_pathway_activity_sees_p53_in_dna_damage_and_mdm2_inhibition(home):
    """Camptothecin (topoisomerase I poison) activates p53 with dose; Nutlin-3a (MDM2
    inhibitor, p53's direct activator) gives the plate's strongest p53 activity."""
    p53 = sql("select contrast, compound, dose, score, padj from pathway_activity "
              "where study_id = 'macseq_pmmsq033' and source = 'p53'").set_index("contrast")
    assert len(p53) == 78  # every compound x dose scored
    camptothecin = p53[p53["compound"] == "CAMPTOTHECIN"].sort_values("dose")["score"]
    assert camptothecin.iloc[-1] > 2 and camptothecin.iloc[-1] > camptothecin.iloc[0]
    assert p53.loc["CAMPTOTHECIN_10uM", "padj"] < 0.05
    assert p53["score"].idxmax() == "Nutlin-3a_10uM"


def test_camptothecin_gets_points_of_departure_with_intervals(home):
    """The bundled MAC-seq plate: camptothecin's gene tPOD and a category POD, each inside
    its interval; the tPOD is compound_potency's; its curves carry BMDL <= BMD <= BMDU."""
    pods = sql("select * from compound_pod where study_id = 'macseq_pmmsq033' "
               "and compound = 'CAMPTOTHECIN'").set_index("pod_type")
    assert {"gene_tpod", "category"} <= set(pods.index)
    assert (pods["pod_lower"] <= pods["pod"]).all() and (pods["pod"] <= pods["pod_upper"]).all()
    assert pods.loc["category", "detail"].split(":")[0] in {"GO_BP", "Hallmark", "Reactome"}
    tpod = sql("select tpod from compound_potency where study_id = 'macseq_pmmsq033' "
               "and compound = 'CAMPTOTHECIN'")["tpod"].item()
    assert pods.loc["gene_tpod", "pod"] == pytest.approx(tpod)
    fits = sql("select bmd, bmdl, bmdu, hitcall from dose_response where study_id = "
               "'macseq_pmmsq033' and fit_ok and bmdl is not null and bmdu is not null")
    assert len(fits) >= 10
    assert ((fits["bmdl"] <= fits["bmd"]) & (fits["bmd"] <= fits["bmdu"])).all()
    assert fits["hitcall"].between(0, 1).all()


def test_combination_tables_through_sql(home):
    """The two simulated combinations (2 plates, 2 wells per plate): interactions on the
    shared fit, their classes against the planted ones, and the summary with its null."""
    truth = home["truth"]
    effects = sql("select * from combination_effects where study_id = 'sim_screen'")
    assert list(effects.columns) == [c for c, _ in TABLES["combination_effects"].columns]
    assert set(effects["combination"]) == set(truth.combinations["condition"])
    assert (effects.groupby("combination").size() == 1500).all()
    np.testing.assert_allclose(effects["log2_fold_change"], effects["observed_log2fc"]
                               - effects["expected_log2fc"], atol=1e-8)
    degs = sql("select contrast, gene_id, log2_fold_change from deg_results "
               "where study_id = 'sim_screen'").set_index(["contrast", "gene_id"])
    row = effects.iloc[0]
    mono = truth.combinations.set_index("condition").loc[row["combination"]]
    assert row["agent_1_log2fc"] == pytest.approx(
        degs.loc[(mono["mono_1"], row["gene_id"]), "log2_fold_change"])
    planted = truth.interaction_class.stack().rename("truth").rename_axis(
        ["gene_id", "combination"]).reset_index()
    called = effects.merge(planted, on=["gene_id", "combination"])
    interacting = called[called["interaction_class"].isin(["synergistic", "antagonistic",
                                                           "emergent"])]
    assert len(interacting) >= 10
    assert (interacting["interaction_class"] == interacting["truth"]).mean() >= 0.8
    summary = sql("select * from combinations where study_id = 'sim_screen'")
    assert set(summary["plate"]) == {"P1,P2"} and (summary["n_wells"] == 4).all()
    assert summary["nonadditive"].all()
    assert (summary["n_nonadditive"] == effects.groupby("combination")["padj"].apply(
        lambda p: (p < 0.05).sum()).reindex(summary["combination"]).to_numpy()).all()
    plots = home["root"] / "warehouse" / "combination_plots" / "study_id=sim_screen"
    assert (plots / "class_counts.png").read_bytes()[:4] == b"\x89PNG"


def test_moa_retrieval_and_consensus_signatures(home):
    truth = home["truth"]
    moa = sql("select * from moa_retrieval where study_id = 'sim_screen'")
    assert list(moa.columns) == [c for c, _ in TABLES["moa_retrieval"].columns]
    activity = moa[moa["level"] == "activity"].set_index("name")
    inactive = truth.ec50.index[truth.ec50.isna()]
    assert not activity.loc[activity["compound"].isin(inactive), "retrieved"].any()
    top = activity[~activity["compound"].isin(inactive) & (activity["dose"] == 10.0)
                   & ~activity["compound"].str.contains(" + ", regex=False)]
    assert top["retrieved"].all() and (top["tas"] > 0).all()
    assert (activity.loc[top.index, "moa"] == truth.moa.reindex(top["compound"]).to_numpy()).all()
    signatures = sql("select contrast, count(*) n from compound_signatures "
                     "where study_id = 'sim_screen' group by contrast")
    assert (signatures["n"] == 1500).all() and len(signatures) == len(activity)
    similarity = sql("select * from compound_similarity where study_id = 'sim_screen'")
    assert similarity["moa_hypothesis"].notna().any()
    known = similarity[similarity["neighbor_moa"].notna()]
    assert (known["neighbor_moa"] == truth.moa.reindex(known["neighbor_compound"])
            .to_numpy()).all()


def test_screen_report_combinations_in_a_browser(home):
    """The report's MoA and combination sections as a reader sees them, offline: every
    image drawn, no console error (screenshot in test-artifacts)."""
    from selenium.webdriver.common.by import By

    from dge_platform_tests.browser import ARTIFACTS, chromium, console_errors

    report = home["root"] / "warehouse" / "reports" / "study_id=sim_screen" / "report.html"
    with chromium(offline=True) as driver:
        driver.get(report.as_uri())
        assert console_errors(driver) == []
        heading = driver.find_element(By.XPATH, "//h2[starts-with(., 'Combinations (')]")
        driver.execute_script("arguments[0].scrollIntoView()", heading)
        images = driver.execute_script(
            "return [...document.querySelectorAll('img')].filter(i => "
            "i.alt.startsWith('combination_') || i.alt === 'class_counts')"
            ".map(i => [i.alt, i.naturalWidth])")
        summary = sql("select combination from combinations where study_id = 'sim_screen'")
        assert len(images) == len(summary) + 1 and all(width > 100 for _, width in images)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        section = driver.find_element(By.XPATH, "//h2[starts-with(., 'Mechanism of action')]")
        driver.execute_script("arguments[0].scrollIntoView()", section)
        driver.save_screenshot(str(ARTIFACTS / "screen_report_moa.png"))
        driver.execute_script("arguments[0].scrollIntoView()", heading)
        driver.save_screenshot(str(ARTIFACTS / "screen_report_combinations.png"))
