"""Concentration-response speed: a 384-well plate's responsive genes and gene-set categories.

Target (issue 19): a 384-well plate with 30 compounds x 6 doses (2 wells each, 24 DMSO):
dose-response of all responsive genes (tcplfit2's 10 models, t4 errors, BMD, BMDL/BMDU by
profile likelihood, hit call) and every compound's PODs over all categories <= 60 s on 2
cores. Baseline in the same run: EPA's pybmds (BMDS 25) per gene on a sample of 200 genes
(Hill, Power, Exponential M5, Polynomial 2, Linear; constant-variance normal; BMR absolute
deviation as the platform's), extrapolated to the plate's gene count.

Inputs (seeded, no network): ``simulate_screen(plate_format=384)`` (20,000 genes, 5 % of the
genes respond to each of 28 active compounds with a Hill curve), expression log2(normalized
count + 1); the responsive genes are the planted ones plus 2 % false positives (what padj <
alpha at any dose passes); categories: the shipped GO BP, Reactome and Hallmark sets with
their symbols given to the simulated genes at random.

    .venv/bin/python bench/dose_response.py [--genes 20000] [--pybmds-genes 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np
import pandas as pd

from dge_platform.enrichment.gene_sets import read_gmt, shipped_collections
from dge_platform.screen.concentration_response import fit_concentration_response, fit_groups
from dge_platform.screen.potency import category_indices, compound_pods
from dge_platform.sim.screen import simulate_screen

TARGET = 60.0
FALSE_POSITIVES = 0.02


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@contextlib.contextmanager
def quiet_core():
    """BMDS's C++ core prints NLopt notices and warnings for every fit on file descriptors 1
    and 2: silence both while it runs."""
    sys.stdout.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    with open(os.devnull, "w") as null:
        for fd in (1, 2):
            os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def pybmds_fit(doses: np.ndarray, values: np.ndarray, bmr: float) -> float:
    """BMDS's continuous models of one gene, as a user of pybmds runs them; its BMD."""
    import pybmds
    from pybmds.constants import Models
    from pybmds.types.continuous import ContinuousRiskType

    try:
        dataset = pybmds.ContinuousIndividualDataset(doses=doses.tolist(),
                                                     responses=values.tolist())
    except ValueError:  # pybmds refuses a dose whose wells are all equal (all zero counts)
        return np.nan
    session = pybmds.Session(dataset=dataset)
    settings = {"bmr_type": ContinuousRiskType.AbsoluteDeviation, "bmr": bmr}
    for model in (Models.Hill, Models.Power, Models.ExponentialM5, Models.Linear):
        session.add_model(model, settings)
    session.add_model(Models.Polynomial, {**settings, "degree": 2})
    session.execute()
    session.recommend()
    chosen = session.recommended_model
    return float(chosen.results.bmd) if chosen is not None else np.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--pybmds-genes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="processes (the step's CPU budget)")
    args = parser.parse_args()

    screen = simulate_screen(n_genes=args.genes, plate_format=384, seed=0)
    plate = screen.plate_map.set_index("sample")
    normalized = screen.counts / screen.size_factors
    expression = np.log2(normalized + 1)
    doses = plate["dose"].where(plate["well_type"] == "sample", 0.0).astype(float)
    rng = np.random.default_rng(1)
    symbols = pd.Series([f"S{i}" for i in range(len(expression))], index=expression.index)
    collections = [(c.name, c.id_type, read_gmt(c.path))
                   for c in shipped_collections("Homo sapiens") if c.id_type == "symbol"]
    real = sorted({g for _, _, sets in collections for members in sets.values()
                   for g in members})
    picked = rng.choice(len(real), size=min(len(real), len(symbols)), replace=False)
    symbols.iloc[:len(picked)] = np.asarray(real)[picked]
    measured = pd.DataFrame({"gene_id": expression.index, "gene_symbol": symbols.to_numpy()})
    controls = plate.index[plate["well_type"] == "control"]

    def responsive(compound: str) -> pd.Index:
        planted = screen.responsive[compound]
        noise = rng.random(len(planted)) < FALSE_POSITIVES
        return planted.index[planted.to_numpy() | noise]

    chosen = {c: responsive(c) for c in screen.responsive.columns}
    first = next(iter(chosen))
    wells = {c: plate.index[plate["compound"] == c].append(controls) for c in chosen}
    fit_concentration_response(expression.loc[chosen[first][:50], wells[first]],
                               doses[wells[first]])  # warm-up

    def platform():
        groups = {c: (expression.loc[genes, wells[c]], doses[wells[c]])
                  for c, genes in chosen.items() if len(genes)}
        found = fit_groups(groups, n_jobs=args.jobs)
        return pd.concat([f.rename_axis("gene_id").reset_index().assign(compound=c)
                          for c, f in found.items()], ignore_index=True)

    seconds_fit, fits = _timed(platform)
    fits["gene_symbol"] = symbols.reindex(fits["gene_id"]).to_numpy()
    empty = pd.DataFrame(columns=["compound", "collection", "source", "fit_ok", "hitcall",
                                  "bmd", "bmdl", "bmdu", "highest_dose"])
    seconds_pod, pods = _timed(lambda: compound_pods(
        fits, empty, category_indices(collections, measured)))
    n_genes = len(fits)

    sample = chosen[first][:args.pybmds_genes]
    ours, _ = _timed(lambda: fit_concentration_response(expression.loc[sample, wells[first]],
                                                        doses[wells[first]],
                                                        errors="normal"))
    x = doses[wells[first]].to_numpy()
    sd = expression.loc[sample, controls].std(axis=1, ddof=1)
    with quiet_core():
        bmds, _ = _timed(lambda: [pybmds_fit(x, expression.loc[g, wells[first]].to_numpy(),
                                             1.349 * sd[g]) for g in sample])
    per_gene_bmds = bmds / len(sample)
    total = seconds_fit + seconds_pod
    print(f"384-well plate: {len(chosen)} compounds, {n_genes:,} gene fits, "
          f"{pods['detail'].str.startswith(('GO', 'Reactome', 'Hallmark')).sum()} category "
          f"PODs over {sum(len(s) for _, _, s in collections):,} sets")
    print(f"{'step':<38}{'platform':>12}{'pybmds':>14}{'ratio':>9}")
    print(f"{f'fits, {args.jobs} processes (10 models, BMDL/BMDU)':<38}{seconds_fit:>11.1f}s"
          f"{per_gene_bmds * n_genes:>13.0f}s{per_gene_bmds * n_genes / seconds_fit:>8.0f}x")
    print(f"{'PODs incl. categories':<38}{seconds_pod:>11.1f}s")
    print(f"{'200 genes, normal errors (pybmds: 5)':<38}{ours:>11.2f}s{bmds:>13.1f}s"
          f"{bmds / ours:>8.0f}x")
    print(f"whole: {total:.1f} s (target <= {TARGET:.0f} s: "
          f"{'met' if total <= TARGET else 'NOT met'}); pybmds extrapolated from "
          f"{len(sample)} genes ({per_gene_bmds * 1000:.0f} ms per gene)")


if __name__ == "__main__":
    main()
