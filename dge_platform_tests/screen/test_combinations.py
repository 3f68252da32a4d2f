"""Combination treatments: interaction classes against planted truth, the non-additivity
null on additive plates, and the pathway-level interaction against an exact OLS fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.de.fit import fit_deseq2
from dge_platform.screen.combinations import (
    combination_effects,
    combination_summary,
    combination_table,
    interaction_classes,
    interaction_contrasts,
    null_interaction_counts,
    null_splits,
    pathway_interactions,
    pseudo_group_sizes,
)
from dge_platform.screen.plate_map import (
    condition_table,
    has_second_agent,
    screen_contrasts,
)
from dge_platform.sim.screen import simulate_screen

ALPHA = 0.05
INTERACTING = ("synergistic", "antagonistic", "emergent")


def analyse(screen, *, with_null: bool = False, n_splits: int = 100):
    """The screen's fit with every combination's interaction, as the deseq2 step runs it;
    with the combinations summary (one plate, ``n_splits`` null relabellings) when
    ``with_null``."""
    sheet = screen.annotated_sheet()
    contrasts = screen_contrasts(sheet, "DMSO")
    combos = combination_table(sheet)
    frame = pd.DataFrame({"condition": pd.Categorical(
        sheet["condition"], categories=["DMSO", *[c.level for c in contrasts]])},
        index=sheet.index)
    fit = fit_deseq2(screen.counts[sheet.index], frame, "~ condition", contrasts, alpha=ALPHA,
                     shrink=False, linear_contrasts=interaction_contrasts(combos, "DMSO"))
    effects = combination_effects(fit.linear_results, fit.results, combos, ALPHA)
    if not with_null:
        return effects, None
    controls = sheet.index[sheet["role"] == "control"].tolist()
    single = sheet[(sheet["role"] == "sample") & ~has_second_agent(sheet)]
    used = set(combos["mono_1"]) | set(combos["mono_2"])
    monos = [w.index.tolist() for label, w in single.groupby("condition") if label in used]
    n_wells = condition_table(sheet).set_index("condition")["n_wells"]
    dispersions = fit.dispersions.set_index("gene_id")
    null = null_interaction_counts(
        screen.counts[sheet.index], fit.size_factors, dispersions["dispersion"],
        dispersions["base_mean"], controls, monos,
        pseudo_group_sizes(combos, n_wells, len(controls)), alpha=ALPHA, n_splits=n_splits,
        seed=0)
    return effects, combination_summary(effects, combos, {"P1": null}, alpha=ALPHA)


def test_interaction_class_rules():
    # rows: interaction, its padj, expected, observed padj, agent padjs -> class
    cases = [
        (2.0, 0.001, 1.5, 0.001, 0.001, 0.9, "synergistic"),
        (-2.0, 0.001, -1.5, 0.001, 0.9, 0.001, "synergistic"),
        (-2.0, 0.001, 1.5, 0.9, 0.001, 0.9, "antagonistic"),    # cancelled
        (-3.0, 0.001, 1.5, 0.001, 0.001, 0.9, "antagonistic"),  # reversed
        (2.0, 0.001, 0.1, 0.001, 0.9, 0.9, "emergent"),
        (0.1, 0.8, 1.5, 0.001, 0.001, 0.9, "additive"),
        (0.0, 0.9, 0.0, 0.9, 0.9, 0.9, "unchanged"),
        (1.5, 0.01, 0.1, 0.3, 0.4, 0.9, "unchanged"),  # interaction alone: no effect to judge
        (1.0, np.nan, 1.0, 0.001, np.nan, 0.001, "additive"),  # filtered padj: not significant
    ]
    values = np.array([c[:6] for c in cases], dtype=float)
    pvalues = np.nan_to_num(values[:, 1], nan=0.5)  # a filtered gene keeps its p-value
    got = interaction_classes(values[:, 0], values[:, 1], pvalues, values[:, 2],
                              values[:, 3], values[:, 4], values[:, 5], ALPHA)
    assert list(got) == [c[6] for c in cases]
    untested = interaction_classes(np.array([1.0]), np.array([np.nan]), np.array([np.nan]),
                                   np.array([1.0]), np.array([0.001]), np.array([0.001]),
                                   np.array([0.5]), ALPHA)
    assert untested[0] is None


def test_combination_table_orders_agents_and_finds_monotherapies():
    screen = simulate_screen(n_genes=200, n_controls=8, n_compounds=4, doses=(1.0, 10.0),
                             n_replicates=2, inactive_compounds=0, n_combinations=2, seed=2)
    first = screen.plate_map.index[screen.plate_map["compound_2"] == "CMP04"][0]
    screen.plate_map.loc[first, ["compound", "compound_2"]] = ["CMP04", "CMP03"]
    table = combination_table(screen.annotated_sheet())
    assert table[["combination", "compound_1", "compound_2", "mono_1", "mono_2",
                  "n_wells"]].to_dict("records") == [
        {"combination": "CMP01_10uM+CMP02_10uM", "compound_1": "CMP01",
         "compound_2": "CMP02", "mono_1": "CMP01_10uM", "mono_2": "CMP02_10uM", "n_wells": 2},
        {"combination": "CMP03_10uM+CMP04_10uM", "compound_1": "CMP03",
         "compound_2": "CMP04", "mono_1": "CMP03_10uM", "mono_2": "CMP04_10uM", "n_wells": 2}]


@pytest.fixture(scope="module")
def planted():
    """Two seeds of a 384-well combination plate: 16 DMSO, 4 compounds x 3 doses and 4
    combinations at the top doses, 6 wells each; 30 genes per interacting class and
    combination, |interaction| 1.5-2.5 log2."""
    tables = []
    for seed in (1, 2):
        screen = simulate_screen(n_genes=6000, plate_format=384, n_controls=16, n_compounds=5,
                                 doses=(0.1, 1.0, 10.0), n_replicates=6, inactive_compounds=1,
                                 n_combinations=4, seed=seed)
        effects, _ = analyse(screen)
        truth = screen.interaction_class.stack().rename("truth")
        planted = screen.interaction.stack().rename("planted")
        truth = pd.concat([truth, planted], axis=1).rename_axis(["gene_id", "combination"])
        tables.append(effects.merge(truth.reset_index(), on=["gene_id", "combination"])
                      .assign(seed=seed))
    return pd.concat(tables, ignore_index=True)


@pytest.mark.parametrize("name", INTERACTING)
def test_classes_recover_planted_interactions(planted, name):
    """Precision and recall >= 0.9 per class, for planted |interaction| >= 1 log2."""
    assert (planted.loc[planted["truth"] == name, "planted"].abs() >= 1).all()
    truth, called = planted["truth"] == name, planted["interaction_class"] == name
    recall = (truth & called).sum() / truth.sum()
    precision = (truth & called).sum() / called.sum()
    assert truth.sum() >= 200
    assert recall >= 0.9, (name, recall)
    assert precision >= 0.9, (name, precision)


def test_interaction_is_observed_minus_expected(planted):
    np.testing.assert_allclose(planted["log2_fold_change"],
                               planted["observed_log2fc"] - planted["expected_log2fc"],
                               atol=1e-8)
    additive = planted[planted["truth"] == "additive"]
    assert (additive["interaction_class"].isin(INTERACTING)).mean() < 0.01


def test_nonadditivity_null_holds_its_level_on_additive_plates():
    """Plates whose combinations are exactly additive: few combinations are called
    non-additive, and the interaction's false discoveries stay rare.

    The call's level is the interaction test's family-wise error under BH: 7.3 % of 344
    additive combinations (43 plates, bench/combinations.py) had a gene with padj < 0.05,
    while the relabelling null sees one in 1-2 % of its splits (its pseudo groups sit at
    control means, where DESeq2's Wald test is exact; shifted, low-count groups make it
    slightly liberal), so its 95th percentile is 0 and the level stays that FWER."""
    called, total, genes = 0, 0, []
    for seed in range(6):
        screen = simulate_screen(n_genes=3000, plate_format=384, n_controls=24, n_compounds=8,
                                 doses=(1.0, 10.0), n_replicates=4, inactive_compounds=0,
                                 n_combinations=8, interactions=False, seed=seed)
        effects, summary = analyse(screen, with_null=True, n_splits=40)
        called += int(summary["nonadditive"].sum())
        total += len(summary)
        genes.append(summary["n_nonadditive"].to_numpy())
        assert (summary["n_null_splits"] == 40).all()
    assert called / total <= 0.15, (called, total)
    assert np.concatenate(genes).mean() < 0.5


def test_nonadditive_plate_is_called(planted):
    screen = simulate_screen(n_genes=3000, plate_format=384, n_controls=16, n_compounds=5,
                             doses=(1.0, 10.0), n_replicates=4, inactive_compounds=1,
                             n_combinations=3, seed=7)
    _, summary = analyse(screen, with_null=True)
    assert summary["nonadditive"].all()
    assert (summary["pvalue"] <= 1 / 101 + 1e-12).all()
    assert (summary["n_synergistic"] + summary["n_antagonistic"] + summary["n_emergent"]
            <= summary["n_nonadditive"]).all()
    assert summary["frac_nonadditive"].between(0, 1).all()


def test_null_is_reproducible_and_uses_disjoint_groups():
    screen = simulate_screen(n_genes=500, n_controls=16, n_compounds=2, doses=(10.0,),
                             n_replicates=4, inactive_compounds=0, n_combinations=1, seed=3)
    sheet = screen.annotated_sheet()
    controls = sheet.index[sheet["role"] == "control"].tolist()
    mono = sheet.index[sheet["condition"] == "CMP01_10uM"].tolist()
    args = (screen.counts[sheet.index], screen.size_factors, screen.dispersions,
            pd.Series(screen.counts.mean(axis=1)), controls, [mono], (4, 4, 4))
    first = null_interaction_counts(*args, alpha=ALPHA, n_splits=6, seed=1)
    np.testing.assert_array_equal(first, null_interaction_counts(*args, alpha=ALPHA,
                                                                 n_splits=6, seed=1, n_jobs=2))
    pool = pd.Index([*controls, *mono])
    splits = null_splits(pool, controls, [mono], (4, 4, 4), 6, seed=1)
    control_set, mono_set = set(controls), set(mono)
    for i, codes in enumerate(splits):
        groups = [set(pool[codes == k]) for k in range(4)]
        assert all(groups), i
        if i % 2:  # monotherapy split: pseudo AB and A from the monotherapy's wells
            assert groups[0] | groups[1] <= mono_set and groups[2] | groups[3] <= control_set
        else:
            assert set().union(*groups) == control_set
            assert [len(g) for g in groups[:3]] == [4, 4, 4]


def test_pathway_interaction_equals_the_ols_interaction_term():
    """The group-means t-test is the A:B term of ~ A * B fitted by OLS on the four groups."""
    rng = np.random.default_rng(4)
    groups = ["AB"] * 4 + ["A"] * 3 + ["B"] * 4 + ["DMSO"] * 9
    wells = [f"W{i:02d}" for i in range(len(groups))]
    sheet = pd.DataFrame({"condition": groups, "plate": "P1",
                          "role": ["control" if g == "DMSO" else "sample" for g in groups]},
                         index=wells)
    a = np.array([g in ("A", "AB") for g in groups], float)
    b = np.array([g in ("B", "AB") for g in groups], float)
    scores = pd.DataFrame(rng.normal(0, 1, (5, len(wells))), columns=wells,
                          index=[f"s{i}" for i in range(5)])
    scores.loc["s0"] += 3 * a * b  # planted interaction
    combos = pd.DataFrame([{"combination": "AB", "mono_1": "A", "mono_2": "B",
                            "plate": "P1"}])
    table = pathway_interactions(scores, sheet, combos, ALPHA).set_index("feature")
    x = np.column_stack([np.ones(len(wells)), a, b, a * b])
    for feature in scores.index:
        y = scores.loc[feature].to_numpy()
        beta, residual, *_ = np.linalg.lstsq(x, y, rcond=None)
        sigma2 = residual[0] / (len(y) - 4)
        se = np.sqrt(sigma2 * np.linalg.inv(x.T @ x)[3, 3])
        assert table.loc[feature, "interaction"] == pytest.approx(beta[3], abs=1e-10)
        assert table.loc[feature, "stat"] == pytest.approx(beta[3] / se, rel=1e-9)
    assert table.loc["s0", "padj"] < ALPHA
    assert table.loc["s0", "interaction_class"] in ("emergent", "synergistic")
