"""Assets as thin wrappers of pipeline steps: declaration helpers and the mapping of a step's
plain result (``pipelines/step.py``) to Dagster outputs, checks, metadata and files.

An asset body is one call: ``yield from run_step(context, pipelines.<kind>.<step>, **inputs)``.
Everything a step computes is testable without Dagster; this module is the whole of what
Dagster adds (per-study batching through ``run_per_study``, the CPU budget, the log).
"""

import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from dge_platform.defs.batch import (
    BACKFILL_POLICY,
    StepEvent,
    StudyEvent,
    StudyFiles,
    cpu_budget,
    described_schema,
    run_per_study,
)
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.pipelines.step import Check, Markdown, StepFailure, StepResult
from dge_platform.storage.tables import TABLES
from dge_platform.storage.warehouse import Warehouse
from dge_platform.study.config import StudyConfig

RESOURCES = {"dge_home", "deseq"}
"""Every study asset may use the data root and the CPU budget (``context.resources``)."""


def study_config(studies: pd.DataFrame) -> StudyConfig:
    """The study.yaml snapshot recorded at ingest."""
    return StudyConfig.model_validate_json(studies["config"].iloc[0])


def kind_ins(kind: str, *names: str) -> dict[str, dg.AssetIn]:
    """Inputs from the kind's own graph: ``name`` is the asset ``<kind>/<name>``."""
    return {name: dg.AssetIn(key=dg.AssetKey([kind, name])) for name in names}


def column_schema(table: str) -> dg.TableSchema:
    """The table's guaranteed columns with their types and descriptions (shown in the UI)."""
    spec = TABLES[table]
    return described_schema(spec, ((name, kind) for name, kind in spec.columns
                                   if name in spec.stored_columns))


def table_out(table: str, kind: str, code_version: str) -> dg.AssetOut:
    """A multi-asset output ``<kind>/<table>`` stored as the warehouse table ``table``."""
    return dg.AssetOut(key_prefix=[kind], io_manager_key="warehouse_io",
                       description=TABLES[table].description, kinds={"parquet"},
                       code_version=code_version,
                       metadata={"dagster/column_schema": column_schema(table)})


def table_asset(table: str, *, kind: str, code_version: str, ins: Mapping[str, dg.AssetIn],
                note: str = "", **kwargs):
    """A per-study asset ``<kind>/<table>`` of the kind's graph, stored as the warehouse table
    ``table`` and batched like every asset (``BACKFILL_POLICY``)."""
    return dg.asset(name=table, key_prefix=[kind], group_name=kind, ins=dict(ins),
                    io_manager_key="warehouse_io", partitions_def=STUDY_PARTITIONS[kind],
                    backfill_policy=BACKFILL_POLICY, kinds={"parquet"},
                    code_version=code_version, required_resource_keys=RESOURCES,
                    metadata={"dagster/column_schema": column_schema(table)},
                    description=f"{TABLES[table].description} {note}".strip(), **kwargs)


def study_asset(*, kind: str, **kwargs):
    """A per-study asset of the kind's graph that writes no table (its metadata, files)."""
    return dg.asset(key_prefix=[kind], group_name=kind, partitions_def=STUDY_PARTITIONS[kind],
                    backfill_policy=BACKFILL_POLICY, required_resource_keys=RESOURCES,
                    **kwargs)


def study_multi_asset(*, kind: str, **kwargs):
    """A per-study multi-asset of the kind's graph."""
    return dg.multi_asset(group_name=kind, partitions_def=STUDY_PARTITIONS[kind],
                          backfill_policy=BACKFILL_POLICY, required_resource_keys=RESOURCES,
                          **kwargs)


def run_step(context: dg.AssetExecutionContext, step: Callable[..., StepResult], *,
             heavy: bool = False, per_study: Callable[[str], dict[str, Any]] | None = None,
             **inputs: Any) -> Iterator[StepEvent]:
    """Run ``step(config, **inputs)`` for every study of the asset's step, ``config`` read from
    the ``studies`` input, and yield its results as Dagster events.

    ``heavy`` steps run under the CPU budget (and get it as ``n_cpus`` if they take it);
    ``per_study(study_id)`` gives further arguments that depend on the study (its folder, say).
    """
    n_cpus = context.resources.deseq.cpus()
    takes_cpus = "n_cpus" in inspect.signature(step).parameters

    def body(study_id: str, studies: pd.DataFrame, **study_inputs: Any) -> Iterator[StudyEvent]:
        extra = {"n_cpus": n_cpus} if takes_cpus else {}
        result = call_step(step, study_config(studies), **study_inputs, **extra,
                           **(per_study(study_id) if per_study else {}))
        yield from step_events(context, study_id, result)

    with cpu_budget(n_cpus) if heavy else nullcontext():
        yield from run_per_study(context, body, warehouse=warehouse(context), **inputs)


def call_step(step: Callable[..., StepResult], *args: Any, **kwargs: Any) -> StepResult:
    """The step's result; its ``StepFailure`` becomes the step's failure, shown as written."""
    try:
        return step(*args, **kwargs)
    except StepFailure as err:
        raise dg.Failure(description=err.description,
                         metadata=dagster_metadata(err.metadata)) from None


def warehouse(context: dg.AssetExecutionContext) -> Warehouse:
    return Warehouse(context.resources.dge_home.home().warehouse)


def step_events(context: dg.AssetExecutionContext, study_id: str,
                result: StepResult) -> Iterator[StudyEvent]:
    """A study's step result as the events ``run_per_study`` merges over the step's studies."""
    for level, text in result.messages:
        getattr(context.log, level)(f"{study_id}: {text}")
    for folder, files in result.files.items():
        yield StudyFiles(folder, files)
    keys = context.assets_def.keys_by_output_name
    for name, value in result.outputs.items():
        output = name if name in keys or len(keys) > 1 else next(iter(keys))
        yield dg.Output(value, output, metadata=dagster_metadata(result.metadata.get(name, {})))
    for check in result.checks:
        yield check_result(context, check)
    if result.materialized is not None:
        yield dg.MaterializeResult(metadata=dagster_metadata(result.materialized))


def check_result(context: dg.AssetExecutionContext, check: Check) -> dg.AssetCheckResult:
    keys = context.assets_def.keys_by_output_name
    key = keys.get(check.output) or next(iter(keys.values()))
    return dg.AssetCheckResult(check_name=check.name, asset_key=key, passed=check.passed,
                               metadata=dagster_metadata(check.metadata))


def dagster_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Plain metadata as Dagster's: ``Markdown`` as Markdown, paths as paths, dicts and lists
    as JSON, text and numbers as they are."""
    def convert(value: Any) -> Any:
        if isinstance(value, Markdown):
            return dg.MetadataValue.md(value.text)
        if isinstance(value, os.PathLike | UPath):  # a local path, or an S3 warehouse's
            return dg.MetadataValue.path(str(value))
        if isinstance(value, dict | list):
            return dg.MetadataValue.json(value)
        return value

    return {key: convert(value) for key, value in metadata.items()}


def for_each_study(context: dg.AssetExecutionContext, step: Callable[[str], StepResult], *,
                   checks_after_write: Callable[[str], Iterable[Check]] | None = None
                   ) -> Iterator[StudyEvent]:
    """Run ``step(study_id)`` (a step of a registered study's folder, without tables in) for
    every study of the asset's step; ``checks_after_write(study_id)`` evaluates checks on
    what the IO manager wrote."""
    def body(study_id: str) -> Iterator[StudyEvent]:
        yield from step_events(context, study_id, call_step(step, study_id))

    def checks(study_id: str) -> list[dg.AssetCheckResult]:
        return [check_result(context, check) for check in checks_after_write(study_id)]

    yield from run_per_study(context, body, warehouse=warehouse(context),
                             checks_after_write=checks if checks_after_write else None)

