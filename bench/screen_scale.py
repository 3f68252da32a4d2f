"""What a large DRUG-seq screen costs: 384-well plates through the whole screen chain.

Simulates 384-well plates (``dge_platform.sim.screen``: 20,000 genes, 24 DMSO + 30 compounds
x 6 doses x 2 wells each) and materializes them with ``dge add --run`` in a fresh data root,
each configuration in its own process:

- *per plate*: every plate its own study (one partition each, as a plate-by-plate screen fans
  out; the baseline), run as one batch;
- *shared*: all plates in one study, one ``~ plate + condition`` fit.

Prints wall time, peak RSS and the heavy steps' durations side by side, the per-plate cost
ratio shared / per plate, and the cost of a 100-plate screen extrapolated from the
per-plate figures (100 partitions over N heavy slots).

    .venv/bin/python bench/screen_scale.py [--plates 2] [--genes 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEAVY = ("deseq2", "compound_activity", "dose_response", "enrichment")


def write_plates(folder: Path, study_id: str, plates: int, genes: int, seed: int) -> Path:
    """A screen study of ``plates`` simulated 384-well plates, one count file per plate."""
    from dge_platform.sim.screen import simulate_screen, write_screen_study

    screen = simulate_screen(n_genes=genes, n_plates=plates, plate_format=384, seed=seed)
    return write_screen_study(folder, screen, study_id)


def worker(mode: str, plates: int, genes: int) -> dict:
    """Materialize ``plates`` plates as ``mode`` in a fresh data root; timings and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["DGE_HOME"] = str(root / "home")
        from dge_platform.registry import add_study
        from dge_platform.runner import instance_for, run_studies
        from dge_platform.storage.home import resolve_home

        home = resolve_home(root / "home").ensure()
        if mode == "shared":
            folders = [write_plates(root / "in" / "shared", "shared", plates, genes, 0)]
        else:
            folders = [write_plates(root / "in" / f"plate{p}", f"plate{p}", 1, genes, p)
                       for p in range(1, plates + 1)]
        ids = [add_study(home, folder).config.id for folder in folders]
        instance = instance_for(home)
        start = time.monotonic()
        outcomes = run_studies(instance, ids, echo=lambda line: None)
        wall = time.monotonic() - start
        if not all(o.success for o in outcomes):
            failed = next(o for o in outcomes if not o.success)
            raise SystemExit(f"{mode}: {failed.failed_step} failed: {failed.error}")
        steps = step_seconds(instance, [o.run_id for o in outcomes])
    return {"wall": wall, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "steps": steps}


def step_seconds(instance, run_ids: list[str]) -> dict[str, float]:
    """Seconds per step key summed over the runs (STEP_START to STEP_SUCCESS)."""
    import dagster as dg

    spent: dict[str, float] = {}
    for run_id in run_ids:
        started = {}
        for record in instance.get_records_for_run(run_id, limit=100_000).records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = record.event_log_entry.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                key = event.step_key
                spent[key] = spent.get(key, 0.0) + record.event_log_entry.timestamp - started[key]
    return spent


def heavy(steps: dict[str, float], name: str) -> float:
    return sum(s for key, s in steps.items() if key.split(".")[0] == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plates", type=int, default=2)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--worker", choices=("per-plate", "shared"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.plates, args.genes)))
        return
    results = {}
    for mode in ("per-plate", "shared"):
        out = subprocess.run([sys.executable, __file__, "--worker", mode, "--plates",
                              str(args.plates), "--genes", str(args.genes)],
                             check=True, capture_output=True, text=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    base, shared = results["per-plate"], results["shared"]
    print(f"{args.plates} x 384-well plates, {args.genes:,} genes, 180 conditions per plate; "
          "each mode in its own process")
    print(f"{'':28}{'per plate (baseline)':>22}{'shared fit':>14}{'shared / per plate':>20}")
    print(f"{'wall time (s)':28}{base['wall']:>22.1f}{shared['wall']:>14.1f}"
          f"{shared['wall'] / base['wall']:>20.2f}")
    print(f"{'peak RSS (GB)':28}{base['rss_gb']:>22.2f}{shared['rss_gb']:>14.2f}"
          f"{shared['rss_gb'] / base['rss_gb']:>20.2f}")
    for name in HEAVY:
        b, s = heavy(base["steps"], name), heavy(shared["steps"], name)
        print(f"{name + ' (s)':28}{b:>22.1f}{s:>14.1f}{s / b if b else float('nan'):>20.2f}")
    per_plate = base["wall"] / args.plates
    print(f"\nper plate, one study each: {per_plate:.1f} s, peak {base['rss_gb']:.2f} GB per "
          "process")
    for slots in (1, 4, 16):
        hours = 100 * per_plate / slots / 3600
        print(f"100 plates as 100 partitions over {slots:>2} heavy slot(s): {hours:5.2f} h "
              f"({100 * per_plate / 3600:.2f} CPU-slot hours)")


if __name__ == "__main__":
    main()
