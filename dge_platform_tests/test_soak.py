"""A short soak (bench/soak.py): a study re-materialized while its inputs change leaves one
Parquet file per table, no temp, stray or staging files, no plot of a removed contrast, and a
catalog whose views count what the files hold."""

from bench.soak import problems, soak


def test_short_soak_keeps_the_warehouse_and_catalog_clean(home, record_property):
    results = soak(home, iterations=3)
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
