"""Single-cell QC -> pseudobulk -> DE: the platform against a plain scanpy + PyDESeq2 script.

Simulates cells once (``dge_platform.sim.singlecell``; default 100,000 cells x 20,000 genes,
16 donors in ctrl and stim, 8 cell types, 5 % doublets, 5 % of genes DE per cell type at
|log2FC| = 1), writes them to one h5ad in a temporary folder (simulation timed apart and not
counted), then runs each contender in its own subprocess on that file:

(a) **platform**: ``dge_platform.singlecell.qc.cell_qc`` on all cells (captures as the capture
    key: MAD outliers per capture + Scrublet per capture), keep the passed cells,
    ``dge_platform.singlecell.pseudobulk.pseudobulk`` by cell type x donor x condition
    (min 10 cells),
    ``pseudobulk_de`` with ``~ donor + condition`` and stim vs ctrl (shrunken LFCs
    included);
(b) **baseline**: what a user writes with scanpy + PyDESeq2: ``calculate_qc_metrics``,
    fixed thresholds (>= 500 UMIs, >= 200 genes, < 20 % mito), ``sc.pp.scrublet`` with
    ``batch_key`` and defaults, ``sc.get.aggregate`` sums, then per cell type a
    ``DeseqDataSet(design="~donor + condition")``, ``deseq2()``, ``DeseqStats.summary()``
    and ``lfc_shrink`` (``DefaultInference(n_cpus=2)``).

Each subprocess reports wall time (h5ad read included), stage times (load, QC, pseudobulk,
DE) and its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) as JSON, plus the peak
summed PSS of the process and its workers (PyDESeq2's joblib processes), sampled every
0.5 s from /proc. The
parent prints them side by side with the platform / baseline ratio, agreement between the
two (per cell type: Pearson r of log2FC over genes with base mean >= 10, Jaccard of the
padj < 0.05 sets), sensitivity and false discovery proportion against the planted truth,
and PASS/FAIL of the platform against the targets (<= 600 s, <= 8 GB).

    .venv/bin/python bench/singlecell.py [--cells 100000] [--genes 20000] [--donors 16]
        [--cell-types 8] [--seed 0] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
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

KEYS = ["cell_type", "donor", "condition"]
CAPTURE = "capture"
MIN_CELLS = 10
ALPHA = 0.05
MIN_BASE_MEAN = 10.0
DOUBLET_RATE = 0.05
TARGET_SECONDS = 600.0
TARGET_GB = 8.0
CONTENDERS = ("platform", "baseline")
LABELS = {"platform": "platform (dge_platform)", "baseline": "scanpy + PyDESeq2 script"}
RESULT_COLUMNS = ["cell_type", "gene_id", "base_mean", "log2_fold_change", "padj",
                  "log2_fold_change_shrunk"]


def _peak_gb(who: int) -> float:
    """Peak RSS (GB) from ``getrusage(who)``; Linux reports ``ru_maxrss`` in KiB."""
    return resource.getrusage(who).ru_maxrss / 1024 ** 2


class TreeMemory:
    """Samples, in a background thread, the summed proportional set size (PSS) of this
    process and all its descendants (e.g. PyDESeq2's joblib workers) and keeps the maximum.

    ``ru_maxrss`` of reaped children is not usable for that: a child forked from a large
    process inherits its high-water mark even after ``exec``. PSS splits shared pages
    between the processes sharing them, so the sum is the tree's real footprint.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval, self.peak_kb = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gb(self) -> float:
        return self.peak_kb / 1024 ** 2

    def _run(self) -> None:
        import os

        root = os.getpid()
        while not self._stop.wait(self.interval):
            self.peak_kb = max(self.peak_kb, sum(_pss_kb(p) for p in _descendants(root)))


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_platform(h5ad: Path) -> tuple[pd.DataFrame, dict, dict]:
    """The platform's pure functions: cell QC -> passed cells -> pseudobulk -> DE."""
    import anndata as ad

    from dge_platform.singlecell.de import pseudobulk_de
    from dge_platform.singlecell.pseudobulk import pseudobulk
    from dge_platform.singlecell.qc import cell_qc
    from dge_platform.study.config import Contrast

    stages: dict[str, float] = {}
    peaks: dict[str, float] = {}  # peak RSS (GB) reached by the end of each stage
    info: dict = {"stage_peak_gb": peaks}
    t = time.perf_counter()
    adata = ad.read_h5ad(h5ad)
    stages["load"] = time.perf_counter() - t
    peaks["load"] = _peak_gb(resource.RUSAGE_SELF)

    t = time.perf_counter()
    qc = cell_qc(adata, CAPTURE, seed=0)
    passed = qc["passed"].to_numpy()
    info["doublet_called"] = qc["predicted_doublet"].to_numpy()
    info["passed"] = passed
    adata = adata[passed].copy()
    stages["qc"] = time.perf_counter() - t
    peaks["qc"] = _peak_gb(resource.RUSAGE_SELF)

    t = time.perf_counter()
    pb = pseudobulk(adata, KEYS, min_cells=MIN_CELLS)
    del adata
    stages["pseudobulk"] = time.perf_counter() - t
    peaks["pseudobulk"] = _peak_gb(resource.RUSAGE_SELF)
    info["pseudobulks"] = int(pb.counts.shape[1])

    t = time.perf_counter()
    contrast = Contrast(name="stim_vs_ctrl", factor="condition", level="stim",
                        reference="ctrl")
    results, skipped = pseudobulk_de(pb, "~ donor + condition", [contrast], alpha=ALPHA,
                                     lfc_threshold=0.0, n_cpus=2)
    stages["de"] = time.perf_counter() - t
    peaks["de"] = _peak_gb(resource.RUSAGE_SELF)
    info["skipped"] = skipped
    return results[RESULT_COLUMNS], stages, info


def run_baseline(h5ad: Path) -> tuple[pd.DataFrame, dict, dict]:
    """A plain scanpy + PyDESeq2 script, as a user would write it."""
    import scanpy as sc
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    stages: dict[str, float] = {}
    peaks: dict[str, float] = {}  # peak RSS (GB) reached by the end of each stage
    info: dict = {"stage_peak_gb": peaks}
    t = time.perf_counter()
    adata = sc.read_h5ad(h5ad)
    stages["load"] = time.perf_counter() - t
    peaks["load"] = _peak_gb(resource.RUSAGE_SELF)

    # QC: standard metrics, fixed thresholds, Scrublet per capture.
    t = time.perf_counter()
    all_cells = adata.obs_names
    adata.var["mt"] = adata.var["gene_symbol"].str.startswith("MT-")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False,
                               inplace=True)
    adata = adata[(adata.obs["total_counts"] >= 500) & (adata.obs["n_genes_by_counts"] >= 200)
                  & (adata.obs["pct_counts_mt"] < 20)].copy()
    sc.pp.scrublet(adata, batch_key=CAPTURE)
    info["doublet_called"] = all_cells.isin(adata.obs_names[adata.obs["predicted_doublet"]])
    adata = adata[~adata.obs["predicted_doublet"]].copy()
    info["passed"] = all_cells.isin(adata.obs_names)
    stages["qc"] = time.perf_counter() - t
    peaks["qc"] = _peak_gb(resource.RUSAGE_SELF)

    # Pseudobulk: sum counts per cell type x donor x condition, drop those of < 10 cells.
    t = time.perf_counter()
    n_cells = adata.obs.groupby(KEYS, observed=True).size()
    pb = sc.get.aggregate(adata, by=KEYS, func="sum")
    del adata
    pb.obs["n_cells"] = [n_cells.get(tuple(row), 0) for row in pb.obs[KEYS].to_numpy()]
    pb = pb[pb.obs["n_cells"] >= MIN_CELLS].copy()
    stages["pseudobulk"] = time.perf_counter() - t
    peaks["pseudobulk"] = _peak_gb(resource.RUSAGE_SELF)
    info["pseudobulks"] = int(pb.n_obs)

    # DE: one PyDESeq2 fit per cell type.
    t = time.perf_counter()
    inference = DefaultInference(n_cpus=2)
    tables = []
    for cell_type in pb.obs["cell_type"].unique():
        sub = pb[pb.obs["cell_type"] == cell_type]
        counts = pd.DataFrame(np.rint(sub.layers["sum"]).astype(int), index=sub.obs_names,
                              columns=sub.var_names)
        metadata = sub.obs[["donor", "condition"]].astype(str)
        dds = DeseqDataSet(counts=counts, metadata=metadata, design="~donor + condition",
                           inference=inference, quiet=True)
        dds.deseq2()
        stats = DeseqStats(dds, contrast=["condition", "stim", "ctrl"], alpha=ALPHA,
                           inference=inference, quiet=True)
        stats.summary()
        table = stats.results_df.copy()
        stats.lfc_shrink(coeff="condition[T.stim]")
        table["log2_fold_change_shrunk"] = stats.results_df["log2FoldChange"]
        table = table.rename(columns={"baseMean": "base_mean",
                                      "log2FoldChange": "log2_fold_change"})
        tables.append(table.assign(cell_type=cell_type, gene_id=table.index))
    stages["de"] = time.perf_counter() - t
    peaks["de"] = _peak_gb(resource.RUSAGE_SELF)
    _reap_loky_workers()
    return pd.concat(tables, ignore_index=True)[RESULT_COLUMNS], stages, info


def _reap_loky_workers() -> None:
    """Shut PyDESeq2's joblib (loky) workers down once DE is done."""
    try:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    except Exception:  # noqa: BLE001 - only affects the reported worker peak
        pass


def worker(contender: str, h5ad: Path, out: Path) -> None:
    """Run one contender; write its results (parquet) and measurements (JSON)."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    run = run_platform if contender == "platform" else run_baseline
    with TreeMemory() as tree:
        results, stages, info = run(h5ad)
    seconds = time.perf_counter() - start
    results = results.assign(cell_type=results["cell_type"].astype(str))
    results.to_parquet(out / f"{contender}.parquet")
    pd.DataFrame({"passed": info.pop("passed"), "doublet_called": info.pop("doublet_called")}
                 ).to_parquet(out / f"{contender}_cells.parquet")
    report = {"seconds": seconds, "stages": stages, "peak_gb": _peak_gb(resource.RUSAGE_SELF),
              "tree_peak_gb": tree.peak_gb, **info}
    (out / f"{contender}.json").write_text(json.dumps(report, default=str))
    print(json.dumps({"contender": contender, "seconds": round(seconds, 1),
                      "peak_gb": round(report["peak_gb"], 2)}), flush=True)


def simulate(args: argparse.Namespace, out: Path) -> None:
    """Subprocess: simulate the cells, write ``cells.h5ad`` and ``truth.parquet``."""
    from dge_platform.sim.singlecell import simulate_cells

    start = time.perf_counter()
    sim = simulate_cells(n_cells=args.cells, n_genes=args.genes, n_donors=args.donors,
                         n_cell_types=args.cell_types, doublet_rate=DOUBLET_RATE,
                         seed=args.seed)
    seconds = time.perf_counter() - start
    sim.adata.write_h5ad(out / "cells.h5ad")
    sim.truth.to_parquet(out / "truth.parquet")
    sim.adata.obs[["true_doublet"]].reset_index(drop=True).to_parquet(out / "cells.parquet")
    (out / "simulate.json").write_text(json.dumps({
        "seconds": seconds, "peak_gb": _peak_gb(resource.RUSAGE_SELF), "nnz": int(sim.adata.X.nnz),
        "umis_per_cell": float(sim.adata.X.sum() / sim.adata.n_obs)}))


def _subprocess(*args: str) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True)


def truth_stats(results: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Sensitivity and false discovery proportion of padj < ALPHA calls, pooled over cell
    types, against the planted truth (a call is true when the gene is DE in that type)."""
    merged = truth.merge(results, on=["cell_type", "gene_id"], how="left")
    called = merged["padj"] < ALPHA
    de = merged["true_lfc"] != 0
    right_sign = np.sign(merged["log2_fold_change"]) == np.sign(merged["true_lfc"])
    return {"calls": int(called.sum()),
            "sensitivity": (called & de).sum() / max(de.sum(), 1),
            "fdp": (called & ~de).sum() / max(called.sum(), 1),
            "sign_ok": (called & de & right_sign).sum() / max((called & de).sum(), 1)}


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per cell type: Pearson r of log2FC (base mean >= 10 in both, finite) and Jaccard of
    the padj < ALPHA sets."""
    rows = []
    for cell_type, x in a.groupby("cell_type", sort=False):
        x = x.set_index("gene_id")
        y = b[b["cell_type"] == cell_type].set_index("gene_id").reindex(x.index)
        ok = ((x["base_mean"] >= MIN_BASE_MEAN) & (y["base_mean"] >= MIN_BASE_MEAN)
              & np.isfinite(x["log2_fold_change"]) & np.isfinite(y["log2_fold_change"]))
        r = np.corrcoef(x.loc[ok, "log2_fold_change"], y.loc[ok, "log2_fold_change"])[0, 1]
        sa, sb = set(x.index[x["padj"] < ALPHA]), set(y.index[y["padj"] < ALPHA])
        rows.append({"cell_type": cell_type, "genes": int(ok.sum()), "pearson_r": r,
                     "calls_platform": len(sa), "calls_baseline": len(sb),
                     "jaccard": len(sa & sb) / len(sa | sb) if sa | sb else np.nan})
    return pd.DataFrame(rows)


def qc_stats(cells: pd.DataFrame, true_doublet: np.ndarray) -> dict:
    called = cells["doublet_called"].to_numpy()
    return {"kept": int(cells["passed"].sum()),
            "doublet_recall": (called & true_doublet).sum() / max(true_doublet.sum(), 1),
            "doublet_precision": (called & true_doublet).sum() / max(called.sum(), 1)}


def report(data: Path, kinds: list[str], args: argparse.Namespace) -> None:
    truth = pd.read_parquet(data / "truth.parquet")
    true_doublet = pd.read_parquet(data / "cells.parquet")["true_doublet"].to_numpy()
    timing = {k: json.loads((data / f"{k}.json").read_text()) for k in kinds}
    results = {k: pd.read_parquet(data / f"{k}.parquet") for k in kinds}
    qc = {k: qc_stats(pd.read_parquet(data / f"{k}_cells.parquet"), true_doublet)
          for k in kinds}
    stats = {k: truth_stats(results[k], truth) for k in kinds}

    rows: list[tuple[str, ...]] = []

    def row(name: str, fmt: str, values: list, ratio: bool = False) -> None:
        cells = [format(v, fmt) for v in values]
        if len(values) == 2:
            cells.append((f"{values[0] / values[1]:.2f}x" if values[1] else "-") if ratio
                         else "")
        rows.append((name, *cells))

    get = [timing[k] for k in kinds]
    row("wall time (s)", ".1f", [t["seconds"] for t in get], ratio=True)
    for stage in ("load", "qc", "pseudobulk", "de"):
        row(f"  {stage} (s)", ".1f", [t["stages"][stage] for t in get], ratio=True)
    row("peak RSS (GB)", ".2f", [t["peak_gb"] for t in get], ratio=True)
    row("  with worker processes (GB, PSS)", ".2f", [t["tree_peak_gb"] for t in get],
        ratio=True)
    for stage in ("load", "qc", "pseudobulk", "de"):
        row(f"  peak RSS by end of {stage} (GB)", ".2f",
            [t["stage_peak_gb"][stage] for t in get])
    row("cells kept after QC", ",d", [qc[k]["kept"] for k in kinds])
    row("doublet recall", ".3f", [qc[k]["doublet_recall"] for k in kinds])
    row("doublet precision", ".3f", [qc[k]["doublet_precision"] for k in kinds])
    row("pseudobulk samples", "d", [timing[k]["pseudobulks"] for k in kinds])
    row("DE calls (padj < 0.05)", ",d", [stats[k]["calls"] for k in kinds])
    row("sensitivity vs truth", ".3f", [stats[k]["sensitivity"] for k in kinds])
    row("FDP vs truth", ".3f", [stats[k]["fdp"] for k in kinds])
    row("right sign among true calls", ".4f", [stats[k]["sign_ok"] for k in kinds])
    header = ("", *[LABELS[k] for k in kinds], *(["platform/baseline"] if len(kinds) == 2
                                                 else []))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for r in [header, *rows]:
        print(f"{r[0]:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(r[1:],
                                                                                 widths[1:])))
    if len(kinds) == 2:
        agree = agreement(results["platform"], results["baseline"])
        print(f"\nagreement platform vs baseline per cell type (log2FC r over base mean >= "
              f"{MIN_BASE_MEAN:g}; Jaccard of padj < {ALPHA} sets):")
        print(agree.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    else:
        print("\nbaseline skipped (--skip-baseline): platform figures only.")
    skipped = timing["platform"].get("skipped") if "platform" in timing else None
    if skipped:
        print(f"platform skipped: {skipped}")
    if "platform" in timing:
        p = timing["platform"]
        peak = max(p["peak_gb"], p["tree_peak_gb"])
        ok_t, ok_m = p["seconds"] <= TARGET_SECONDS, peak <= TARGET_GB
        print(f"\nplatform targets at {args.cells:,} cells x {args.genes:,} genes: "
              f"wall {p['seconds']:.0f} s <= {TARGET_SECONDS:.0f} s: "
              f"{'PASS' if ok_t else 'FAIL'}; peak {peak:.2f} GB <= {TARGET_GB:.0f} GB: "
              f"{'PASS' if ok_m else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--donors", type=int, default=16)
    parser.add_argument("--cell-types", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true",
                        help="platform only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--h5ad", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        worker(args.contender, args.h5ad, args.out)
        return
    if args.simulate:
        simulate(args, args.out)
        return

    data = Path(tempfile.mkdtemp(prefix="dge-singlecell-"))
    try:
        _subprocess("--simulate", "--out", str(data), "--cells", str(args.cells),
                    "--genes", str(args.genes), "--donors", str(args.donors),
                    "--cell-types", str(args.cell_types), "--seed", str(args.seed))
        sim = json.loads((data / "simulate.json").read_text())
        print(f"simulated {args.cells:,} cells x {args.genes:,} genes, {args.donors} donors x "
              f"2 conditions, {args.cell_types} cell types, {DOUBLET_RATE:.0%} doublets: "
              f"{sim['nnz']:,} non-zeros, {sim['umis_per_cell']:.0f} UMIs/cell, in "
              f"{sim['seconds']:.1f} s (not counted); h5ad "
              f"{(data / 'cells.h5ad').stat().st_size / 1e9:.2f} GB", flush=True)
        kinds = ["platform"] + ([] if args.skip_baseline else ["baseline"])
        for kind in kinds:
            _subprocess("--contender", kind, "--h5ad", str(data / "cells.h5ad"),
                        "--out", str(data))
        report(data, kinds, args)
    finally:
        if args.keep:
            print(f"outputs kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
