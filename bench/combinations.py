"""Speed of a screen's MoA and combination steps, and the non-additivity null's level.

Target (issue 20): a 384-well plate with 30 compounds x 6 doses plus 20 combinations: the
MoA and combination steps together <= 30 s on 2 cores. The layout is two 384-well plates
(each: 24 DMSO, 30 compounds x 6 doses x 1 well, 20 combinations at the top doses x 2
wells; 488 wells, 20,000 genes), since one plate cannot hold every condition in replicate.

Steps timed after the shared DESeq2 fit (which the screen runs anyway; the 20 interaction
contrasts' share of it is reported):

* MoA: robust z-scores, label-free features, MODZ consensus signatures and TAS, activity
  mAP with its permutation p-values, consistency mAP, neighbour MoA enrichment;
* combinations: the classes (``combination_effects``), each plate's null of 100
  relabellings, the summary.

Baseline in the same run: what a user does without the shared fit, one PyDESeq2 run of
``~ A + B + A:B`` per combination on its four groups' wells (measured on ``--baseline``
combinations, extrapolated to 20).

``--level N`` also runs N additive-only plates (8 combinations each) and prints the share of
combinations called non-additive (the null's level) and of null splits with a false
discovery.

    .venv/bin/python bench/combinations.py [--genes 20000] [--baseline 2] [--level 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from pydeseq2.dds import DeseqDataSet
from pydeseq2.ds import DeseqStats

from dge_platform.de.fit import fit_deseq2
from dge_platform.screen.combinations import (
    combination_effects,
    combination_summary,
    combination_table,
    interaction_contrasts,
    null_interaction_counts,
    pseudo_group_sizes,
)
from dge_platform.screen.moa import (
    activity_map,
    consensus_signatures,
    consistency_map,
    feature_genes,
    moa_enrichment,
    robust_z,
)
from dge_platform.screen.plate_map import (
    condition_classes,
    condition_table,
    has_second_agent,
    screen_contrasts,
)
from dge_platform.screen.similarity import compound_similarity, informative_genes
from dge_platform.sim.screen import simulate_screen

TARGET = 30.0
ALPHA = 0.05


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def shared_fit(screen, sheet: pd.DataFrame, combos: pd.DataFrame, interactions: bool):
    contrasts = screen_contrasts(sheet, "DMSO")
    frame = pd.DataFrame({
        "condition": pd.Categorical(sheet["condition"],
                                    categories=["DMSO", *[c.level for c in contrasts]]),
        "plate": pd.Categorical(sheet["plate"])}, index=sheet.index)
    design = "~ plate + condition" if sheet["plate"].nunique() > 1 else "~ condition"
    return fit_deseq2(screen.counts[sheet.index], frame, design, contrasts, alpha=ALPHA,
                      shrink=False, linear_contrasts=interaction_contrasts(combos, "DMSO")
                      if interactions else ())


def nulls(screen, sheet, combos, fit, n_splits: int = 100) -> dict[str, np.ndarray]:
    dispersions = fit.dispersions.set_index("gene_id")
    n_wells = condition_table(sheet).set_index("condition")["n_wells"]
    used = set(combos["mono_1"]) | set(combos["mono_2"])
    out = {}
    for plate, wells in sheet.groupby("plate"):
        controls = wells.index[wells["role"] == "control"].tolist()
        single = wells[(wells["role"] == "sample") & ~has_second_agent(wells)]
        monos = [w.index.tolist() for label, w in single.groupby("condition") if label in used]
        out[plate] = null_interaction_counts(
            screen.counts[sheet.index], fit.size_factors, dispersions["dispersion"],
            dispersions["base_mean"], controls, monos,
            pseudo_group_sizes(combos, n_wells, len(controls)), alpha=ALPHA,
            n_splits=n_splits, seed=0, n_jobs=2)
    return out


def moa_steps(expression: pd.DataFrame, sheet: pd.DataFrame, results: pd.DataFrame) -> dict:
    tested = sheet[sheet["role"].isin(("sample", "control"))]
    times = {}
    times["robust z + features"], (z, features) = _timed(lambda: (
        robust_z(expression[tested.index], tested),
        feature_genes(expression[tested.index], plates=tested["plate"])))
    treated = tested[tested["role"] == "sample"]
    times["consensus (MODZ, TAS)"], consensus = _timed(
        lambda: consensus_signatures(z[treated.index], treated["condition"], features))
    times["activity mAP"], activity = _timed(lambda: activity_map(z, tested, features))
    retrieved = activity.loc[activity["retrieved"].fillna(False).astype(bool), "condition"]
    meta = condition_table(treated).set_index("condition")
    meta["moa"] = condition_classes(treated).reindex(meta.index)
    times["consistency mAP"], consistency = _timed(lambda: consistency_map(
        consensus.signatures[retrieved.tolist()], meta.loc[retrieved], features))

    def similarity():
        rows = results[results["contrast"].isin(set(retrieved))]
        genes = informative_genes(rows, alpha=ALPHA)
        found = compound_similarity(consensus.signatures[retrieved.tolist()], genes,
                                    conditions_meta=meta.loc[retrieved].reset_index()
                                    .rename(columns={"condition": "contrast"}))
        return moa_enrichment(found.neighbors, meta["moa"])

    times["similarity + MoA enrichment"], _ = _timed(similarity)
    return {"times": times, "activity": activity, "consistency": consistency}


def baseline_per_combination(screen, sheet: pd.DataFrame, combos: pd.DataFrame,
                             n: int) -> float:
    """Seconds per combination of PyDESeq2 on its four groups with ~ A + B + A:B."""
    times = []
    for row in combos.head(n).itertuples():
        groups = {row.combination: (1, 1), row.mono_1: (1, 0), row.mono_2: (0, 1),
                  "DMSO": (0, 0)}
        wells = sheet.index[sheet["condition"].isin(groups)]
        frame = pd.DataFrame([groups[c] for c in sheet.loc[wells, "condition"]],
                             index=wells, columns=["A", "B"]).astype(str)
        frame["plate"] = sheet.loc[wells, "plate"].to_numpy()

        def run(f=frame, w=wells):
            dds = DeseqDataSet(counts=screen.counts[w].T, metadata=f.astype("category"),
                               design="~ plate + A + B + A:B", quiet=True)
            dds.deseq2()
            names = list(dds.varm["LFC"].columns)
            interaction = np.array([1.0 if ":" in n else 0.0 for n in names])
            return DeseqStats(dds, contrast=interaction, quiet=True).summary()

        seconds, _ = _timed(run)
        times.append(seconds)
    return float(np.mean(times))


def level(n_plates: int, genes: int) -> None:
    called = total = null_hits = null_total = 0
    for seed in range(n_plates):
        screen = simulate_screen(n_genes=genes, plate_format=384, n_controls=24, n_compounds=8,
                                 doses=(1.0, 10.0), n_replicates=4, inactive_compounds=0,
                                 n_combinations=8, interactions=False, seed=100 + seed)
        sheet = screen.annotated_sheet()
        combos = combination_table(sheet)
        fit = shared_fit(screen, sheet, combos, True)
        effects = combination_effects(fit.linear_results, fit.results, combos, ALPHA)
        null = nulls(screen, sheet, combos, fit)
        summary = combination_summary(effects, combos, null, alpha=ALPHA)
        called += int(summary["nonadditive"].sum())
        total += len(summary)
        null_hits += int(sum((v > 0).sum() for v in null.values()))
        null_total += sum(len(v) for v in null.values())
    print(f"\nnon-additivity level on {n_plates} additive plates: {called} of {total} "
          f"combinations called ({called / total:.1%}); null splits with a false discovery: "
          f"{null_hits} of {null_total} ({null_hits / null_total:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=2)
    parser.add_argument("--level", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    screen = simulate_screen(n_genes=args.genes, n_plates=2, plate_format=384, n_controls=24,
                             n_compounds=30, n_replicates=1, n_combinations=20,
                             combination_replicates=2, moa_groups=6, seed=0)
    sheet = screen.annotated_sheet()
    combos = combination_table(sheet)
    print(f"{len(sheet)} wells on 2 plates, {args.genes:,} genes, {len(combos)} combinations")
    fit_plain, _ = _timed(lambda: shared_fit(screen, sheet, combos, False))
    fit_time, fit = _timed(lambda: shared_fit(screen, sheet, combos, True))
    steps = {}
    steps["combination classes"], effects = _timed(
        lambda: combination_effects(fit.linear_results, fit.results, combos, ALPHA))
    steps["non-additivity null (2 x 100)"], null = _timed(lambda: nulls(screen, sheet, combos,
                                                                         fit))
    steps["combination summary"], summary = _timed(
        lambda: combination_summary(effects, combos, null, alpha=ALPHA))
    expression = np.log2(screen.counts[sheet.index] / fit.size_factors + 1)
    moa = moa_steps(expression, sheet, fit.results)
    steps.update(moa["times"])
    total = sum(steps.values())
    per_fit = baseline_per_combination(screen, sheet, combos, args.baseline)

    extra = max(fit_time - fit_plain, 0.0)  # the fits' run-to-run noise is a few seconds
    print(f"\nshared fit (already part of the screen): {fit_time:.1f} s with the 20 interaction "
          f"contrasts, {fit_plain:.1f} s without")
    print(f"{'step':<32}{'seconds':>10}")
    for name, seconds in steps.items():
        print(f"{name:<32}{seconds:>10.2f}")
    print(f"{'MoA + combination steps':<32}{total:>10.2f}   target <= {TARGET:.0f} s: "
          f"{'met' if total <= TARGET else 'MISSED'}")
    baseline = per_fit * len(combos)
    platform = extra + sum(steps[k] for k in ("combination classes",
                                              "non-additivity null (2 x 100)",
                                              "combination summary"))
    print(f"\nbaseline: PyDESeq2 ~ plate + A + B + A:B per combination {per_fit:.1f} s x "
          f"{len(combos)} = {baseline:.0f} s; the shared fit's extra time for the interactions "
          f"+ the combination steps {platform:.1f} s -> {baseline / platform:.1f}x")
    print(f"non-additive combinations: {int(summary['nonadditive'].sum())} of {len(summary)}; "
          f"activity-retrieved conditions: {int(moa['activity']['retrieved'].sum())} of "
          f"{len(moa['activity'])}; consistent classes: "
          f"{int(moa['consistency']['retrieved'].sum())} of {len(moa['consistency'])}")
    if args.level:
        level(args.level, min(args.genes, 6000))


if __name__ == "__main__":
    main()
