"""Activity speed: pathway and TF activity of a 384-well plate's contrasts, scores of its wells.

Targets (issue 17): one contrast <= 1 s; 180 contrasts <= 30 s; sample scores of 384 wells
<= 30 s. Baseline in the same run: decoupler called naively, once per contrast (as a
notebook loop would), on the same statistics and PROGENy model (mlm) or CollecTRI (ulm).

Inputs (seeded, no network): 20,000 genes (the PROGENy and CollecTRI symbols plus made-up names)
x 180 contrasts of N(0, 1) Wald statistics with a planted p53 response in every tenth, and
384 wells of N(8, 1) expression.

    .venv/bin/python bench/activity.py [--contrasts 180] [--wells 384]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from dge_platform.activity.models import collectri_network, progeny_model
from dge_platform.activity.samples import gene_set_scores, pathway_scores
from dge_platform.activity.scores import activity
from dge_platform.enrichment.gene_sets import read_gmt
from dge_platform.resources import resource_path

TARGET_ONE, TARGET_ALL, TARGET_WELLS = 1.0, 30.0, 30.0


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contrasts", type=int, default=180)
    parser.add_argument("--wells", type=int, default=384)
    parser.add_argument("--genes", type=int, default=20_000)
    args = parser.parse_args()
    import decoupler as dc

    model = progeny_model("Homo sapiens")
    collectri = collectri_network("Homo sapiens")
    symbols = list(dict.fromkeys([*model["target"], *collectri["target"]]))
    genes = symbols + [f"FILLER{i}" for i in range(args.genes - len(symbols))]
    rng = np.random.default_rng(0)
    stats = pd.DataFrame(rng.normal(size=(len(genes), args.contrasts)), index=genes,
                         columns=[f"c{i:03d}" for i in range(args.contrasts)])
    p53 = model[model["source"] == "p53"].set_index("target")["weight"]
    stats.loc[p53.index, stats.columns[::10]] += np.sign(p53.to_numpy())[:, None]

    activity(stats.iloc[:, :2], model, method="mlm")  # warm-up: imports, numba compilation
    one, _ = _timed(lambda: activity(stats.iloc[:, :1], model, method="mlm"))
    platform, table = _timed(lambda: activity(stats, model, method="mlm"))
    net = model[["source", "target", "weight"]]

    def naive():
        return [dc.mt.mlm(data=stats[[c]].T, net=net, tmin=5) for c in stats.columns]

    baseline, _ = _timed(naive)
    planted = table[(table["source"] == "p53")].set_index("condition")["score"]
    print(f"pathway activity, {len(genes):,} genes x {args.contrasts} contrasts (mlm, 14 "
          f"pathways): one contrast {one:.2f} s (target <= {TARGET_ONE:.0f} s: "
          f"{'PASS' if one <= TARGET_ONE else 'FAIL'})")
    print(f"  all contrasts: platform {platform:.2f} s, decoupler per contrast "
          f"{baseline:.2f} s, ratio {baseline / platform:.1f}x (target <= {TARGET_ALL:.0f} s: "
          f"{'PASS' if platform <= TARGET_ALL else 'FAIL'}); planted p53 t >= "
          f"{planted[stats.columns[::10]].min():.1f}, others <= "
          f"{planted.drop(stats.columns[::10]).abs().max():.1f}")

    activity(stats.iloc[:, :2], collectri, method="ulm")
    tf_platform, tfs = _timed(lambda: activity(stats, collectri, method="ulm"))
    tf_baseline, _ = _timed(lambda: [dc.mt.ulm(data=stats[[c]].T, net=collectri, tmin=5)
                                     for c in stats.columns])
    print(f"TF activity (ulm, CollecTRI, {tfs['source'].nunique():,} TFs scored): platform "
          f"{tf_platform:.2f} s, decoupler per contrast {tf_baseline:.2f} s, ratio "
          f"{tf_baseline / tf_platform:.1f}x (target <= {TARGET_ALL:.0f} s: "
          f"{'PASS' if tf_platform <= TARGET_ALL else 'FAIL'})")

    wells = pd.DataFrame(rng.normal(8, 1, size=(len(genes), args.wells)), index=genes,
                         columns=[f"w{i:03d}" for i in range(args.wells)])
    hallmark = read_gmt(resource_path("genesets", "h.all.v7.0.symbols.gmt.gz"))
    in_sets = wells[wells.index.isin({g for s in hallmark.values() for g in s})]
    t_pathways, _ = _timed(lambda: pathway_scores(wells, model))
    t_sets, _ = _timed(lambda: gene_set_scores(in_sets, hallmark))
    total = t_pathways + t_sets
    print(f"sample scores, {args.wells} wells: PROGENy {t_pathways:.2f} s, GSVA Hallmark "
          f"({len(in_sets):,} genes) {t_sets:.2f} s, total {total:.2f} s (target <= "
          f"{TARGET_WELLS:.0f} s: {'PASS' if total <= TARGET_WELLS else 'FAIL'})")


if __name__ == "__main__":
    main()
