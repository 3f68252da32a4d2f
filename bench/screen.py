"""DRUG-seq screen: the platform's vectorized DESeq2 engine against PyDESeq2, same run.

Simulates a plate (``dge_platform.sim.screen``: 20,000 genes; 96 wells = 16 DMSO + 10
compounds x 4 doses x 2, or 384 wells = 24 DMSO + 30 x 6 x 2) and runs, each in its own
subprocess on the same counts, design ``~ condition`` and every compound-dose vs DMSO:
(a) the engine as the screen asset runs it (``fit_deseq2(engine="vectorized")``: fit, Wald
tests, Cook's and independent filtering, apeGLM shrinkage, blind VST), and once more
without shrinkage; (b) PyDESeq2 (one ``RParityDeseqDataSet`` fit and one ``DeseqStats`` per
contrast, ``DefaultInference(n_cpus=2)``, no shrinkage: its shrinkage would add hours).
Prints wall time and peak RSS side by side, the speed-up of (a) with shrinkage over (b), and
agreement: per-contrast Pearson r of log2FC, Jaccard of padj < 0.05 sets, sensitivity and
FDP vs truth.

    .venv/bin/python bench/screen.py [--plate 384] [--skip-pydeseq2] [--genes 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dge_platform.sim.screen import CONTROL, simulate_screen  # noqa: E402


def design_frame(plate_map: pd.DataFrame) -> pd.DataFrame:
    pm = plate_map.set_index("sample")
    levels = [CONTROL] + sorted(set(pm["condition"]) - {CONTROL})
    return pd.DataFrame({"condition": pd.Categorical(pm["condition"], categories=levels)},
                        index=pm.index)


def contrasts_of(frame: pd.DataFrame) -> list:
    from dge_platform.study.config import Contrast

    return [Contrast(name=f"{lv}_vs_DMSO", factor="condition", level=lv, reference=CONTROL)
            for lv in frame["condition"].cat.categories[1:]]


LABELS = {"engine+shrink": "engine + apeGLM shrinkage", "engine": "engine, no shrinkage",
          "pydeseq2": "PyDESeq2, no shrinkage"}


def worker(kind: str, data: Path, out: Path, sf_type: str) -> None:
    """Run one engine on the saved screen; write its results and timings."""
    counts = pd.read_parquet(data / "counts.parquet")
    frame = design_frame(pd.read_parquet(data / "plate_map.parquet"))
    contrasts = contrasts_of(frame)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    if kind == "pydeseq2":
        from pydeseq2.default_inference import DefaultInference

        from dge_platform.de.fit import _fitted, contrast_stats, results_table

        inference = DefaultInference(n_cpus=2)
        dds = _fitted(counts, frame, "~ condition", inference, sf_type)
        fitted = time.perf_counter()
        results = pd.concat([results_table(contrast_stats(dds, c, alpha=0.05,
                                                          inference=inference), c)
                             for c in contrasts])
        extra = {"fit_s": fitted - start}
    else:
        from dge_platform.de.fit import fit_deseq2

        results = fit_deseq2(counts, frame, "~ condition", contrasts, engine="vectorized",
                             shrink=kind == "engine+shrink",
                             size_factors_fit_type=sf_type).results
        extra = {}
    seconds = time.perf_counter() - start
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    results[["contrast", "gene_id", "log2_fold_change", "padj"]].to_parquet(out / f"{kind}.parquet")
    (out / f"{kind}.json").write_text(json.dumps({"seconds": seconds, "peak_mb": rss / 1024,
                                                  **extra}))


def run(kind: str, data: Path, sf_type: str) -> dict:
    subprocess.run([sys.executable, __file__, "--worker", kind, "--data", str(data),
                    "--size-factors", sf_type], check=True)
    return json.loads((data / f"{kind}.json").read_text())


def truth_stats(results: pd.DataFrame, screen, contrasts: list) -> tuple[float, float]:
    """Sensitivity and FDP of padj < 0.05 calls over all contrasts."""
    names = {c.name: c.level for c in contrasts}
    truth = screen.true_lfc.abs() > 0
    called = results[results["padj"] < 0.05]
    hits = truth.stack().loc[list(zip(called["gene_id"], called["contrast"].map(names)))]
    return hits.sum() / truth.to_numpy().sum(), 1 - hits.mean() if len(hits) else 0.0


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    rs, jaccards, pooled_a, pooled_b = [], [], set(), set()
    for name, x in a.groupby("contrast"):
        x = x.set_index("gene_id")
        y = b[b["contrast"] == name].set_index("gene_id").loc[x.index]
        ok = x["log2_fold_change"].notna() & y["log2_fold_change"].notna()
        rs.append(np.corrcoef(x.loc[ok, "log2_fold_change"], y.loc[ok, "log2_fold_change"])[0, 1])
        sa, sb = set(x.index[x["padj"] < 0.05]), set(y.index[y["padj"] < 0.05])
        if sa | sb:
            jaccards.append(len(sa & sb) / len(sa | sb))
        pooled_a |= {(name, g) for g in sa}
        pooled_b |= {(name, g) for g in sb}
    return {"r_median": np.median(rs), "r_min": np.min(rs), "jaccard_median": np.median(jaccards),
            "jaccard_pooled": len(pooled_a & pooled_b) / len(pooled_a | pooled_b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plate", type=int, choices=[96, 384], default=96)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--skip-pydeseq2", action="store_true",
                        help="engine only (PyDESeq2 takes hours on a 384-well plate)")
    parser.add_argument("--size-factors", choices=["auto", "ratio", "poscounts"],
                        default="auto")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.data, args.size_factors)
        return

    from dge_platform.de.engine import size_factor_method

    screen = simulate_screen(n_genes=args.genes, plate_format=args.plate)
    data = Path(tempfile.mkdtemp(prefix="dge-screen-"))
    screen.counts.to_parquet(data / "counts.parquet")
    screen.plate_map.to_parquet(data / "plate_map.parquet")
    contrasts = contrasts_of(design_frame(screen.plate_map))
    sf_type = size_factor_method(screen.counts.to_numpy(), args.size_factors)
    print(f"{args.plate}-well plate: {args.genes:,} genes x {screen.counts.shape[1]} wells, "
          f"{len(contrasts)} contrasts vs DMSO, size factors {sf_type}", flush=True)
    kinds = ["engine+shrink", "engine"] + ([] if args.skip_pydeseq2 else ["pydeseq2"])
    timings = {kind: run(kind, data, sf_type) for kind in kinds}
    results = {kind: pd.read_parquet(data / f"{kind}.parquet") for kind in kinds}
    print(f"\n{'':28s} {'wall s':>9s} {'peak RSS MB':>12s} {'sensitivity':>12s} {'FDP':>7s}")
    for kind in kinds:
        sens, fdp = truth_stats(results[kind], screen, contrasts)
        t = timings[kind]
        note = f"  (fit {t['fit_s']:.1f} s)" if "fit_s" in t else ""
        print(f"{LABELS[kind]:28s} {t['seconds']:9.1f} {t['peak_mb']:12.0f} {sens:12.3f} "
              f"{fdp:7.3f}{note}")
    if args.skip_pydeseq2:
        print("\nPyDESeq2 skipped (--skip-pydeseq2): engine figures only.")
        return
    ratio = timings["pydeseq2"]["seconds"] / timings["engine+shrink"]["seconds"]
    print(f"\nspeed-up, PyDESeq2 (no shrinkage) / engine (with shrinkage): {ratio:.1f}x")
    agree = agreement(results["engine+shrink"], results["pydeseq2"])
    print(f"agreement engine vs PyDESeq2: Pearson r(log2FC) median {agree['r_median']:.6f} "
          f"min {agree['r_min']:.6f}; Jaccard(padj<0.05) median {agree['jaccard_median']:.4f} "
          f"pooled {agree['jaccard_pooled']:.4f}")


if __name__ == "__main__":
    main()
