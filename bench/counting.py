"""Fragment counting from BAM: the platform's ``count_fragments`` next to featureCounts.

Target (issue 9): counting a simulated BAM of 2 million read pairs against a 20,000-gene
annotation within 3x of Debian's ``subread`` featureCounts, same files, same run.

Inputs: ``bench/simulate_bam.py`` (seeded; written once into ``--workdir`` and reused while
its parameters match). Timed, wall clock, after a warm-up call that loads the numba kernels:

* ``count_fragments`` with ``resolution="union"`` (R summarizeOverlaps, the platform default)
  and ``resolution="votes"`` (featureCounts' rule for a pair whose mates hit different genes);
* ``featureCounts -p --countReadPairs -T 1`` and ``-T 2`` (default filters; every simulated
  record is primary, NH:i:1 and properly paired, so none applies).

Agreement: the votes counts must equal featureCounts gene by gene (exit 1 otherwise); the
union counts are reported next to them (they differ only by pairs whose mates hit different
genes, which union calls ambiguous).

    .venv/bin/python bench/counting.py [--pairs 2000000] [--genes 20000] [--workdir DIR]
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
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.simulate_bam import simulate_bam  # noqa: E402
from dge_platform.fragment_counting import count_fragments  # noqa: E402
from dge_platform.gene_models import read_gtf  # noqa: E402

WARMUP_BAM = REPO / "data/upstream/airway/bam_subsets/SRR1039508_subset.bam"
WARMUP_GTF = REPO / "data/upstream/airway/Homo_sapiens.GRCh37.75_subset.gtf.gz"
TARGET_RATIO = 3.0


def inputs(workdir: Path, pairs: int, genes: int) -> tuple[Path, Path]:
    """The simulated GTF and BAM, simulated unless ``workdir`` holds them for these sizes."""
    params = {"pairs": pairs, "genes": genes, "seed": 7}
    stamp = workdir / "params.json"
    gtf, bam = workdir / "annotation.gtf", workdir / "reads.bam"
    if stamp.exists() and json.loads(stamp.read_text()) == params and bam.exists():
        return gtf, bam
    t = time.perf_counter()
    simulate_bam(workdir, pairs, genes, seed=7)
    stamp.write_text(json.dumps(params))
    print(f"simulated {pairs:,} pairs / {genes:,} genes in {time.perf_counter() - t:.0f} s "
          f"({bam.stat().st_size / 1e6:.0f} MB BAM)")
    return gtf, bam


def featurecounts(gtf: Path, bam: Path, threads: int, out: Path) -> tuple[float, pd.Series,
                                                                            dict[str, int]]:
    """Run featureCounts; (seconds, counts per gene, summary)."""
    cmd = ["featureCounts", "-p", "--countReadPairs", "-T", str(threads), "-a", str(gtf),
           "-o", str(out), str(bam)]
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if run.returncode:
        sys.exit(f"featureCounts failed ({run.returncode}):\n{run.stderr[-2000:]}")
    table = pd.read_csv(out, sep="\t", comment="#", index_col=0)
    summary = pd.read_csv(f"{out}.summary", sep="\t", index_col=0).iloc[:, 0]
    return seconds, table.iloc[:, -1].astype("int64"), summary[summary > 0].to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "dge_bench_counting")
    args = parser.parse_args()
    if shutil.which("featureCounts") is None:
        sys.exit("featureCounts not found: install Debian's subread package "
                 "(sudo apt-get install subread) and rerun.")
    args.workdir.mkdir(parents=True, exist_ok=True)
    gtf, bam = inputs(args.workdir, args.pairs, args.genes)

    t = time.perf_counter()
    count_fragments(WARMUP_BAM, read_gtf(WARMUP_GTF))
    print(f"warm-up (numba load/compile) {time.perf_counter() - t:.1f} s")

    rows = []
    t = time.perf_counter()
    models = read_gtf(gtf)
    gtf_seconds = time.perf_counter() - t
    ours = {}
    for resolution in ("union", "votes"):
        t = time.perf_counter()
        counts, stats = count_fragments(bam, models, resolution=resolution)
        seconds = time.perf_counter() - t
        ours[resolution] = (counts, stats)
        rows.append((f"count_fragments ({resolution})", seconds + gtf_seconds, stats))
    fc = {}
    for threads in (1, 2):
        seconds, counts, summary = featurecounts(gtf, bam, threads,
                                                 args.workdir / f"fc_T{threads}.txt")
        fc[threads] = counts
        rows.append((f"featureCounts -T {threads}", seconds, summary))
    peak_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fc1, fc2 = rows[2][1], rows[3][1]
    print(f"\n{args.pairs:,} read pairs, {args.genes:,} genes "
          f"(GTF read: {gtf_seconds:.2f} s, included in count_fragments)")
    print(f"{'tool':<30}{'seconds':>9}{'x fc -T1':>10}{'x fc -T2':>10}{'assigned':>11}"
          f"{'ambiguous':>11}{'no feature':>12}")
    for name, seconds, s in rows:
        print(f"{name:<30}{seconds:>9.2f}{seconds / fc1:>10.2f}{seconds / fc2:>10.2f}"
              f"{s.get('Assigned', 0):>11,}"
              f"{s.get('Unassigned_Ambiguity', 0):>11,}{s.get('Unassigned_NoFeatures', 0):>12,}")
    # (featureCounts' own peak is not shown: a forked child's ru_maxrss includes this process.)
    print(f"peak RSS of this process (GTF, BAM records, counts): {peak_ours:.0f} MB")

    failed = False
    for threads in (1, 2):
        ref = fc[threads]
        for resolution, (counts, _) in ours.items():
            same = ref.reindex(counts.index).eq(counts)
            print(f"{resolution:>5} vs featureCounts -T {threads}: {int(same.sum()):,} / "
                  f"{len(counts):,} genes equal, |diff| total "
                  f"{int((ref.reindex(counts.index) - counts).abs().sum()):,}")
            failed |= resolution == "votes" and not bool(same.all())
    ratio = rows[0][1] / fc1
    print(f"union / featureCounts -T 1 = {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x): "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    if failed:
        sys.exit("votes counts differ from featureCounts")


if __name__ == "__main__":
    main()
