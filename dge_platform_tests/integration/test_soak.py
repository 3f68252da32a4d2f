"""A short soak (bench/soak.py, dge_platform/sim/soak.py): a study re-materialized while its
inputs change leaves one Parquet file per table of its kind, no temp, stray or staging files,
no plot of a removed contrast, and a catalog whose views count what the files hold."""

from dge_platform.defs import tables_of
from dge_platform.registry import add_study
from dge_platform.runner import instance_for, run_studies
from dge_platform.sim.soak import STUDY_ID, problems, soak


def test_short_soak_keeps_the_warehouse_and_catalog_clean(home, record_property):
    instance = instance_for(home)

    def add_and_run(folder):  # ``dge add DIR --run`` in this process, as bench/soak.py does
        add_study(home, folder)
        outcomes = run_studies(instance, [STUDY_ID], echo=lambda line: None)
        return all(o.success for o in outcomes), instance.get_runs_count()

    # One file per table of a bulk study (its kind's tables only) and per cross-study table.
    results = soak(home, 3, add_and_run, len(tables_of("bulk")) + 2)
    record_property("report: soak, 3 iterations",
                    ", ".join(f"#{f.iteration}: {f.seconds} s, {f.parquet_files} files, "
                              f"{f.artifacts} plots/reports, RSS {f.rss_mb:.0f} MB, Dagster "
                              f"home {f.dagster_mb} MB" for f in results))
    assert problems(results) == []
    # Version 1 adds a contrast (its rows, plots), version 2 removes it again.
    assert [f.contrasts for f in results] == [1, 2, 1]
    assert [f.deg_rows for f in results] == [200, 400, 200]
    assert results[0].artifacts == results[2].artifacts < results[1].artifacts
    assert [f.runs for f in results] == [2, 4, 6]  # each: the study's run, the cross-study run
