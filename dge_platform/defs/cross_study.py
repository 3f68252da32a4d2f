"""Cross-study assets: computed over every study's DEG table, refreshed when any changes.

They depend on every kind's ``deg_results`` (lineage in the UI) but read it through the
catalog (DuckDB, only the columns needed) rather than loading each study's partition. An
eager automation condition re-materializes them after any study's ``deg_results`` partition
is updated (sensor ``cross_study_automation``); ``dge run`` refreshes them after its study
runs.
"""

import dagster as dg

from dge_platform.defs.steps import column_schema, dagster_metadata
from dge_platform.pipelines import cross_study as cross_study_steps
from dge_platform.pipelines.step import StepResult
from dge_platform.storage.tables import TABLES
from dge_platform.study.kinds import KINDS

GROUP = "cross_study"
CODE_VERSION = "cross-study-1"


def _cross_study_asset(table: str):
    return dg.asset(name=table, io_manager_key="warehouse_io", group_name=GROUP,
                    kinds={"parquet"}, code_version=CODE_VERSION,
                    deps=[dg.AssetKey([kind, "deg_results"]) for kind in KINDS],
                    automation_condition=dg.AutomationCondition.eager(),
                    required_resource_keys={"dge_home"},
                    metadata={"dagster/column_schema": column_schema(table)},
                    description=TABLES[table].description)


def _table(context: dg.AssetExecutionContext, result: StepResult, name: str):
    context.add_output_metadata(dagster_metadata(result.metadata[name]))
    return result.outputs[name]


@_cross_study_asset("gene_recurrence")
def gene_recurrence(context: dg.AssetExecutionContext):
    results = cross_study_steps.all_results(context.resources.dge_home.home())
    return _table(context, cross_study_steps.gene_recurrence(results), "gene_recurrence")


@_cross_study_asset("contrast_similarity")
def contrast_similarity(context: dg.AssetExecutionContext):
    results = cross_study_steps.all_results(context.resources.dge_home.home())
    return _table(context, cross_study_steps.contrast_similarity(results), "contrast_similarity")


ASSETS = [gene_recurrence, contrast_similarity]
cross_study_assets = dg.AssetSelection.groups(GROUP)

cross_study_job = dg.define_asset_job(
    "cross_study_job", selection=cross_study_assets,
    description="Refresh the cross-study tables from every study's DEG results.")

cross_study_automation = dg.AutomationConditionSensorDefinition(
    "cross_study_automation", target=cross_study_assets,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes the cross-study tables once any study's deg_results "
    "partition has been updated (eager automation condition).")
