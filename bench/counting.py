"""Fragment counting from BAM: the platform's ``count_fragments`` next to featureCounts.

Target (issue 9): counting a simulated BAM of 2 million read pairs against a 20,000-gene
annotation within 3x of Debian's ``subread`` featureCounts, same files, same run.

Inputs: ``dge_platform.sim.bam`` (seeded; 3 % of the genic fragments are multi-mappers with
secondary alignment pairs and NH 2-3; written once into ``--workdir`` and reused while its
parameters match).

Each ``count_fragments`` configuration runs in a fresh process (``--one``), which loads the
numba kernels on an airway BAM first, then times reading the GTF and counting, wall clock,
and reports its peak RSS (``ru_maxrss``) and the RSS before the call, so the growth is the
counting's own memory:

* ``resolution="union", multimapping="count"`` (R summarizeOverlaps, the platform default);
* ``resolution="votes", multimapping="count"`` (featureCounts ``-M``'s rule);
* ``resolution="votes", multimapping="skip"`` (featureCounts' default rule).

featureCounts runs as ``featureCounts -p --countReadPairs -T 1`` and ``-T 2`` (default: the
multi-mappers are ``Unassigned_MultiMapping``) and ``-T 1 -M`` (every alignment counted); its
peak RSS is its own (``os.wait4``; this parent process stays small).

Agreement (exit 1 otherwise): votes/skip must equal featureCounts' default and votes/count
featureCounts ``-M``, gene by gene and on every summary line; the union counts are reported
next to them (they differ by pairs whose mates hit different genes, which union calls
ambiguous).

    .venv/bin/python bench/counting.py [--pairs 2000000] [--genes 20000] [--workdir DIR]

Several samples (``--samples N``, default 4, instead of the comparison above):
``dge_platform.counting.libraries.count_libraries`` on N simulated BAMs of one 20,000-gene
annotation (``--pairs`` each, default 500,000; 3 % multi-mappers; each its own reads), as a
study with ``strandedness: unstranded``, ``multimapping: count`` runs them: ``workers=1``
into an empty cache, ``workers=2`` into another empty cache, then ``workers=2`` again on
that cache (every sample reused: the time is hashing the inputs for the cache keys). Each
call runs in a fresh process, as a Dagster run would (so the per-process memo of file
digests does not carry over; numba kernels load from numba's cache). The two counted
caches must hold the same counts and statistics (exit 1 otherwise).

    .venv/bin/python bench/counting.py --samples [4] [--pairs 500000] [--genes 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WARMUP_BAM = REPO / "data/upstream/airway/bam_subsets/SRR1039508_subset.bam"
WARMUP_GTF = REPO / "data/upstream/airway/Homo_sapiens.GRCh37.75_subset.gtf.gz"
TARGET_RATIO = 3.0
SAMPLE_PAIRS = 500_000  # per BAM with --samples
MULTI_FRACTION = 0.03
OURS = [("union", "count"), ("votes", "count"), ("votes", "skip")]
# featureCounts runs: (label, threads, extra options, which of OURS must equal it)
FEATURECOUNTS = [("featureCounts -T 1", 1, [], ("votes", "skip")),
                 ("featureCounts -T 2", 2, [], ("votes", "skip")),
                 ("featureCounts -T 1 -M", 1, ["-M"], ("votes", "count"))]
SUMMARY = ["Assigned", "Unassigned_Unmapped", "Unassigned_Singleton",
           "Unassigned_MultiMapping", "Unassigned_Secondary", "Unassigned_NoFeatures",
           "Unassigned_Ambiguity"]


def inputs(workdir: Path, pairs: int, genes: int) -> tuple[Path, Path]:
    """The simulated GTF and BAM, simulated unless ``workdir`` holds them for these sizes.

    Simulated in a child process: this one must stay small, as a forked child's ru_maxrss
    starts from its parent's."""
    params = {"pairs": pairs, "genes": genes, "seed": 7, "multi_fraction": MULTI_FRACTION}
    stamp = workdir / "params.json"
    gtf, bam = workdir / "annotation.gtf", workdir / "reads.bam"
    if stamp.exists() and json.loads(stamp.read_text()) == params and bam.exists():
        return gtf, bam
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dge_platform.sim.bam", str(workdir),
                    "--pairs", str(pairs), "--genes", str(genes),
                    "--multi-fraction", str(MULTI_FRACTION)], check=True)
    stamp.write_text(json.dumps(params))
    print(f"simulated {pairs:,} pairs / {genes:,} genes in {time.perf_counter() - t:.0f} s "
          f"({bam.stat().st_size / 1e6:.0f} MB BAM)")
    return gtf, bam


def sample_inputs(workdir: Path, n: int, pairs: int, genes: int) -> tuple[Path, list[Path]]:
    """The GTF and N BAMs (``samples/sample<k>/``: one annotation, seed 7; reads from seed
    k), simulated unless present for these sizes, two at a time."""
    folder = workdir / "samples"
    params = {"pairs": pairs, "genes": genes, "seed": 7, "multi_fraction": MULTI_FRACTION}
    dirs = [folder / f"sample{k}" for k in range(1, n + 1)]
    todo = [d for d in dirs if not ((d / "params.json").exists() and (d / "reads.bam").exists()
                                    and json.loads((d / "params.json").read_text()) == params)]
    t = time.perf_counter()
    running: list[tuple[Path, subprocess.Popen]] = []
    for k, d in enumerate(dirs, start=1):
        if d not in todo:
            continue
        if len(running) >= max(1, os.cpu_count() or 1):
            _finish(*running.pop(0), params)
        running.append((d, subprocess.Popen(
            [sys.executable, "-m", "dge_platform.sim.bam", str(d),
             "--pairs", str(pairs), "--genes", str(genes), "--multi-fraction",
             str(MULTI_FRACTION), "--read-seed", str(k)], stdout=subprocess.DEVNULL)))
    for d, proc in running:
        _finish(d, proc, params)
    if todo:
        print(f"simulated {len(todo)} x {pairs:,} pairs / {genes:,} genes in "
              f"{time.perf_counter() - t:.0f} s")
    gtf = dirs[0] / "annotation.gtf"
    if any((d / "annotation.gtf").read_bytes() != gtf.read_bytes() for d in dirs[1:]):
        sys.exit("the simulated samples' GTFs differ")
    return gtf, [d / "reads.bam" for d in dirs]


def _finish(folder: Path, proc: subprocess.Popen, params: dict) -> None:
    if proc.wait():
        sys.exit(f"simulating {folder} failed")
    (folder / "params.json").write_text(json.dumps(params))


def sample_plan(gtf: Path, bams: list[Path]):
    from dge_platform.counting.libraries import CountPlan, Library

    return CountPlan(source="bam",
                     libraries=tuple(Library(f"S{k}", {"bam": b})
                                     for k, b in enumerate(bams, start=1)),
                     references={"gtf": gtf},
                     settings={"strandedness": "unstranded", "multimapping": "count"},
                     sheet_file="samples.csv")


def libraries(cache: Path, workers: int, gtf: Path, bams: list[Path]) -> None:
    """Child process: time one ``count_libraries`` call, print JSON (with, when every sample
    was reused, the time to hash the inputs again without the memo)."""
    from dge_platform._core.memo import _sha256
    from dge_platform.counting.libraries import count_libraries

    plan = sample_plan(gtf, bams)
    t = time.perf_counter()
    run = count_libraries(plan, cache, workers=workers)
    seconds = time.perf_counter() - t
    result = {"seconds": seconds, "keys": run.keys, "counted": run.counted,
              "reused": run.reused, "sample_seconds": run.seconds,
              "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if not run.counted:
        t = time.perf_counter()
        for path in [gtf, *bams]:
            _sha256(path)
        result["hash_seconds"] = time.perf_counter() - t
    print(json.dumps(result))


def run_libraries(cache: Path, workers: int, gtf: Path, bams: list[Path]) -> dict:
    run = subprocess.run([sys.executable, __file__, "--libraries", str(cache), str(workers),
                          str(gtf), *map(str, bams)], capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"count_libraries (workers={workers}) failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def samples_bench(workdir: Path, n: int, pairs: int, genes: int) -> None:
    """``--samples``: count_libraries with workers=1, workers=2 and on a full cache."""
    from dge_platform.counting.libraries import assemble_counts

    gtf, bams = sample_inputs(workdir, n, pairs, genes)
    size_mb = sum(b.stat().st_size for b in bams) / 1e6
    caches = {w: workdir / "samples" / f"cache_workers{w}" for w in (1, 2)}
    for cache in caches.values():
        shutil.rmtree(cache, ignore_errors=True)
    one_worker = run_libraries(caches[1], 1, gtf, bams)
    two_workers = run_libraries(caches[2], 2, gtf, bams)
    reuse = run_libraries(caches[2], 2, gtf, bams)

    base = one_worker["seconds"]
    print(f"\ncount_libraries on {n} BAMs x {pairs:,} read pairs ({size_mb:.0f} MB in all), "
          f"{genes:,} genes, unstranded, multimapping count; {os.cpu_count()} CPUs; "
          "each call in a fresh process")
    print(f"{'call':<34}{'seconds':>8}{'vs w=1':>8}{'counted':>8}{'reused':>7}"
          f"{'s/sample':>9}{'peak MB':>9}")
    for name, r in (("workers=1, empty cache", one_worker),
                    ("workers=2, empty cache", two_workers),
                    ("workers=2, cache reused", reuse)):
        per = r["sample_seconds"]
        mean = f"{sum(per.values()) / len(per):.2f}" if per else "-"
        peak = max(r["peak_mb"], r["children_peak_mb"])
        print(f"{name:<34}{r['seconds']:>8.2f}{r['seconds'] / base:>8.2f}"
              f"{len(r['counted']):>8}{len(r['reused']):>7}{mean:>9}{peak:>9.0f}")
    print(f"workers=2 speedup over workers=1: {base / two_workers['seconds']:.2f}x; "
          f"cache reuse {reuse['seconds']:.2f} s, of which hashing the {n} BAMs and the GTF "
          f"takes {reuse['hash_seconds']:.2f} s (sha256, files in the page cache)")
    print("s/sample: count_libraries' per-sample seconds (GTF read + counting + Parquet), "
          "mean; peak MB: the largest process (parent, or a pool worker)")
    failed = sorted(reuse["reused"]) != sorted(one_worker["keys"]) or reuse["counted"]
    plan = sample_plan(gtf, bams)
    built = {w: assemble_counts(plan, caches[w], r["keys"])
             for w, r in ((1, one_worker), (2, two_workers))}
    same = (built[1].counts.equals(built[2].counts) and built[1].stats.equals(built[2].stats))
    print(f"workers=1 and workers=2 results: {'equal' if same else 'DIFFER'}; third call "
          f"{'reused every sample' if not failed else 'counted again'}")
    if failed or not same:
        sys.exit(1)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(gtf: Path, bam: Path, resolution: str, multimapping: str, out: Path) -> None:
    """Child process: warm up, time GTF + counting, print JSON, write counts to ``out``."""
    from dge_platform.counting.fragments import count_fragments
    from dge_platform.readers.gene_models import read_gtf

    count_fragments(WARMUP_BAM, read_gtf(WARMUP_GTF))  # numba load/compile
    t = time.perf_counter()
    models = read_gtf(gtf)
    gtf_seconds = time.perf_counter() - t
    rss_before = _rss_mb()
    t = time.perf_counter()
    counts, stats = count_fragments(bam, models, resolution=resolution,
                                    multimapping=multimapping)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts.to_csv(out)
    print(json.dumps({"gtf_seconds": gtf_seconds, "count_seconds": seconds, "stats": stats,
                      "peak_mb": peak, "rss_before_mb": rss_before}))


def run_ours(gtf: Path, bam: Path, resolution: str, multimapping: str,
             workdir: Path) -> tuple[dict, dict[str, int]]:
    out = workdir / f"ours_{resolution}_{multimapping}.csv"
    run = subprocess.run([sys.executable, __file__, "--one", str(gtf), str(bam), resolution,
                          multimapping, str(out)], capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"count_fragments ({resolution}, {multimapping}) failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    counts = {}
    with out.open() as fh:
        next(fh)
        for line in fh:
            gene, value = line.rstrip("\n").split(",")
            counts[gene] = int(value)
    return result, counts


def run_featurecounts(gtf: Path, bam: Path, threads: int, extra: list[str],
                      out: Path) -> tuple[float, float, dict[str, int], dict[str, int]]:
    """(seconds, peak RSS MB, counts per gene, summary)."""
    cmd = ["featureCounts", "-p", "--countReadPairs", "-T", str(threads), *extra,
           "-a", str(gtf), "-o", str(out), str(bam)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"featureCounts failed ({status}):\n{stderr[-2000:]}")
    counts = {}
    with out.open() as fh:
        for line in fh:
            if line.startswith("#") or line.startswith("Geneid"):
                continue
            fields = line.rstrip("\n").split("\t")
            counts[fields[0]] = int(fields[-1])
    summary = {}
    with open(f"{out}.summary") as fh:
        next(fh)
        for line in fh:
            name, value = line.rstrip("\n").split("\t")[:2]
            summary[name] = int(value)
    return seconds, usage.ru_maxrss / 1024, counts, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None,
                        help="read pairs (per BAM): default 2,000,000, or 500,000 per sample")
    parser.add_argument("--samples", type=int, nargs="?", const=4, default=None,
                        help="benchmark count_libraries on N BAMs instead (default N 4)")
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "dge_bench_counting")
    parser.add_argument("--one", nargs=5, metavar=("GTF", "BAM", "RESOLUTION", "MULTIMAPPING",
                                                   "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--libraries", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        gtf, bam, resolution, multimapping, out = args.one
        one(Path(gtf), Path(bam), resolution, multimapping, Path(out))
        return
    if args.libraries:
        cache, workers, gtf, *bams = args.libraries
        libraries(Path(cache), int(workers), Path(gtf), [Path(b) for b in bams])
        return
    if args.samples:
        args.workdir.mkdir(parents=True, exist_ok=True)
        samples_bench(args.workdir, args.samples, args.pairs or SAMPLE_PAIRS, args.genes)
        return
    args.pairs = args.pairs or 2_000_000
    if shutil.which("featureCounts") is None:
        sys.exit("featureCounts not found: install Debian's subread package "
                 "(sudo apt-get install subread) and rerun.")
    args.workdir.mkdir(parents=True, exist_ok=True)
    gtf, bam = inputs(args.workdir, args.pairs, args.genes)

    rows = []  # (name, seconds, peak MB, growth MB or None, summary)
    ours = {}
    for resolution, multimapping in OURS:
        result, counts = run_ours(gtf, bam, resolution, multimapping, args.workdir)
        ours[resolution, multimapping] = (counts, result["stats"])
        rows.append((f"ours {resolution}/{multimapping}",
                     result["gtf_seconds"] + result["count_seconds"], result["peak_mb"],
                     result["peak_mb"] - result["rss_before_mb"], result["stats"]))
    fc = {}
    for label, threads, extra, _ in FEATURECOUNTS:
        seconds, peak, counts, summary = run_featurecounts(
            gtf, bam, threads, extra, args.workdir / f"fc_T{threads}{''.join(extra)}.txt")
        fc[label] = (counts, summary)
        rows.append((label, seconds, peak, None, summary))

    fc1 = next(r[1] for r in rows if r[0] == "featureCounts -T 1")
    fc2 = next(r[1] for r in rows if r[0] == "featureCounts -T 2")
    print(f"\n{args.pairs:,} read pairs ({MULTI_FRACTION:.0%} of the genic ones multi-mappers), "
          f"{args.genes:,} genes; ours = count_fragments(resolution/multimapping), seconds "
          "include reading the GTF")
    print(f"{'tool':<24}{'seconds':>8}{'x fc-T1':>8}{'x fc-T2':>8}{'peak MB':>8}{'+MB':>6}"
          f"{'assigned':>11}{'multimap':>10}{'ambiguous':>10}{'no feature':>11}")
    for name, seconds, peak, growth, s in rows:
        print(f"{name:<24}{seconds:>8.2f}{seconds / fc1:>8.2f}{seconds / fc2:>8.2f}"
              f"{peak:>8.0f}{'' if growth is None else f'{growth:.0f}':>6}"
              f"{s.get('Assigned', 0):>11,}{s.get('Unassigned_MultiMapping', 0):>10,}"
              f"{s.get('Unassigned_Ambiguity', 0):>10,}{s.get('Unassigned_NoFeatures', 0):>11,}")
    print("peak MB: the process's ru_maxrss (ours: Python, pandas, numba and the GTF "
          "included); +MB: ours' growth during the count_fragments call")
    multi = ours["union", "count"][1]["multimapping_fragments"]
    print(f"multimapping_fragments (counted in 'count', skipped in 'skip'): {multi:,}")
    union = ours["union", "count"][1]
    sense, antisense = union["strand_sense"], union["strand_antisense"]
    print(f"strand evidence (union/count): {sense:,} sense, {antisense:,} antisense "
          f"({sense / max(sense + antisense, 1):.1%} sense; an unstranded library)")

    failed = False
    for label, _, _, expected in FEATURECOUNTS:
        ref_counts, ref_summary = fc[label]
        for key, (counts, stats) in ours.items():
            if key not in (expected, ("union", "count")):
                continue
            same = sum(ref_counts.get(g) == c for g, c in counts.items())
            diff = sum(abs(ref_counts.get(g, 0) - c) for g, c in counts.items())
            stat_diff = {k: (stats.get(k, 0), ref_summary.get(k, 0)) for k in SUMMARY
                         if stats.get(k, 0) != ref_summary.get(k, 0)}
            must = key == expected
            print(f"{'/'.join(key):>12} vs {label:<22}: {same:,} / {len(counts):,} genes equal, "
                  f"|diff| total {diff:,}"
                  + (f"; summary {'equal' if not stat_diff else f'differs {stat_diff}'}"
                     if must else ""))
            failed |= must and (same != len(counts) or len(ref_counts) != len(counts)
                                or bool(stat_diff))
    ratio = rows[0][1] / fc1
    print(f"union/count / featureCounts -T 1 = {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x): "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    if failed:
        sys.exit("votes counts differ from featureCounts")


if __name__ == "__main__":
    main()
