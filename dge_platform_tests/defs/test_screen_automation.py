"""Screens under automation: a new screen registers and runs; a new plate of an existing
screen (a count file matched by its glob, plus plate-map rows) triggers a re-run."""

from __future__ import annotations

import shutil

import dagster as dg
import pandas as pd
import pytest

from dge_platform.defs.automation import study_sensor
from dge_platform.defs.resources import DgeHomeResource
from dge_platform.validation import validate_study
from dge_platform_tests.conftest import write_screen


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def tick(instance, home, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"dge_home": DgeHomeResource(root=str(home.root))})
    result = study_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def add_plate(folder, plate: str, template: str = "P1") -> None:
    """Copy plate ``template`` as a new plate: its count file and its plate-map rows."""
    counts = pd.read_csv(folder / "counts" / f"{template.lower()}.tsv", sep="\t", index_col=0)
    counts.columns = [c.replace(f"{template}_", f"{plate}_") for c in counts.columns]
    counts.to_csv(folder / "counts" / f"{plate.lower()}.tsv", sep="\t")
    plate_map = pd.read_csv(folder / "plate_map.tsv", sep="\t", dtype=str)
    new = plate_map[plate_map["plate"] == template].assign(
        plate=plate, sample=lambda t: t["sample"].str.replace(f"{template}_", f"{plate}_"))
    pd.concat([plate_map, new]).to_csv(folder / "plate_map.tsv", sep="\t", index=False)


def test_new_screen_then_new_plate_trigger_runs(instance, home):
    folder = write_screen(home.studies / "toy_screen")
    first = tick(instance, home)
    assert [(r.partition_key, r.job_name) for r in first.run_requests] == [
        ("toy_screen", "screen_job")]
    # A screen is a partition of the screens only.
    assert instance.get_dynamic_partitions("screens") == ["toy_screen"]
    assert instance.get_dynamic_partitions("bulk_studies") == []
    assert tick(instance, home, first.cursor).run_requests == []  # nothing changed

    add_plate(folder, "P2")
    assert validate_study(folder).study.config.design == "~ plate + condition"
    second = tick(instance, home, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["toy_screen"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_new_plate_without_plate_map_rows_is_reported_not_run(instance, home):
    folder = write_screen(home.studies / "toy_screen")
    first = tick(instance, home)
    shutil.copy(folder / "counts" / "p1.tsv", folder / "counts" / "p2.tsv")  # same well names
    second = tick(instance, home, first.cursor)
    assert second.run_requests == []
    problems = validate_study(folder).problems
    assert str(problems[0]).startswith("counts/p2.tsv: header: sample name(s) also in "
                                       "counts/p1.tsv")
