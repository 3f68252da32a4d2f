"""The bulk chain and its DESeq2 engine against PyDESeq2 called directly, same run.

For the bundled airway study and a simulated 60,000-gene x 24-sample study (2 batches x
2 conditions x 6): time (a) the whole bulk asset chain through Dagster (`dge run`: ingest,
validation, DESeq2 fit + tests + shrinkage + VST with the default (vectorized) engine,
batch correction, QC plots, report, Parquet writes), (b) the vectorized engine alone
(``fit_deseq2(engine="vectorized")``) and (c) PyDESeq2 alone on the same matrix doing the
same statistics (fit, Wald test per contrast, apeGLM shrinkage, blind VST). Prints all
three and the ratios.

    .venv/bin/python bench/bulk_de.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def simulated_study(folder: Path, n_genes: int, n_samples: int) -> Path:
    rng = np.random.default_rng(1)
    mean = np.exp(rng.normal(3.5, 2.0, n_genes))
    dispersion = 0.02 + 2.0 / mean
    condition = np.tile(["ctrl", "treat"], n_samples // 2)
    batch = np.repeat(["b1", "b2"], n_samples // 2)
    lfc = np.where(rng.random(n_genes) < 0.1, rng.normal(0, 1.5, n_genes), 0)
    mu = mean[:, None] * np.where(condition == "treat", 2 ** lfc[:, None], 1) \
        * np.where(batch == "b2", 1.3, 1.0)
    r = 1 / dispersion[:, None]
    counts = rng.negative_binomial(r, r / (r + mu))
    names = [f"S{i:02d}" for i in range(n_samples)]
    folder.mkdir(parents=True)
    pd.DataFrame(counts, index=[f"G{i:05d}" for i in range(n_genes)], columns=names) \
        .rename_axis("gene_id").to_csv(folder / "counts.tsv.gz", sep="\t")
    pd.DataFrame({"sample": names, "condition": condition, "batch": batch}) \
        .to_csv(folder / "samples.tsv", sep="\t", index=False)
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "id": "sim", "kind": "bulk", "organism": "simulated", "counts": "counts.tsv.gz",
        "samples": "samples.tsv", "design": "~ batch + condition", "batch": "batch",
        "contrasts": [{"name": "treat_vs_ctrl", "factor": "condition", "level": "treat",
                       "reference": "ctrl"}]}))
    return folder


def platform_seconds(study_dir: Path, home: Path) -> float:
    from dge_platform.registry import add_study
    from dge_platform.runner import instance_for, run_study
    from dge_platform.storage.home import resolve_home

    dge_home = resolve_home(home).ensure()
    os.environ["DGE_HOME"] = str(home)
    study = add_study(dge_home, study_dir)
    instance = instance_for(dge_home)
    start = time.perf_counter()
    outcome = run_study(instance, study.config.id, echo=lambda line: None)
    seconds = time.perf_counter() - start
    if not outcome.success:
        sys.exit(f"platform run failed: {outcome.error}")
    return seconds


def ready_study(study_dir: Path):
    """Counts, design frame and config; parsing is not timed (the baselines get a ready
    matrix)."""
    from dge_platform.study.design import study_design_frame
    from dge_platform.validation import load_study

    study = load_study(study_dir)
    cfg = study.config
    return study.counts, study_design_frame(study.samples, cfg.design, cfg.contrasts,
                                            cfg.batch), cfg


def engine_seconds(study_dir: Path) -> float:
    from dge_platform.de.fit import fit_deseq2

    counts, frame, cfg = ready_study(study_dir)
    start = time.perf_counter()
    fit_deseq2(counts, frame, cfg.design, cfg.contrasts, alpha=cfg.alpha, engine="vectorized")
    return time.perf_counter() - start


def pydeseq2_seconds(study_dir: Path) -> float:
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    from dge_platform.defs.resources import CpuBudgetResource

    counts, frame, cfg = ready_study(study_dir)
    counts = counts.T
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference = DefaultInference(n_cpus=CpuBudgetResource().cpus())  # as the platform
        dds = DeseqDataSet(counts=counts, metadata=frame, design=cfg.design, inference=inference,
                           quiet=True)
        dds.deseq2()
        for c in cfg.contrasts:
            stats = DeseqStats(dds, contrast=[c.factor, c.level, c.reference],
                               inference=inference, quiet=True)
            stats.summary()
            stats.lfc_shrink(coeff=f"{c.factor}[T.{c.level}]")
        dds.vst(use_design=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="6,000 simulated genes instead of 60,000")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dge-bench-"))
    try:
        studies = [("airway (bundled, 63,677 genes x 8)", REPO / "data" / "studies" / "airway")]
        n_genes = 6_000 if args.quick else 60_000
        studies.append((f"simulated ({n_genes:,} genes x 24)",
                        simulated_study(work / "sim_src", n_genes, 24)))
        print(f"{'study':40s} {'platform s':>11s} {'engine s':>9s} {'pydeseq2 s':>11s} "
              f"{'platform/pydeseq2':>18s} {'pydeseq2/engine':>16s}")
        for i, (label, folder) in enumerate(studies):
            platform = platform_seconds(folder, work / f"home{i}")
            engine = engine_seconds(folder)
            direct = pydeseq2_seconds(folder)
            print(f"{label:40s} {platform:11.1f} {engine:9.1f} {direct:11.1f} "
                  f"{platform / direct:18.2f} {direct / engine:16.1f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
