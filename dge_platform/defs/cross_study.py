"""Cross-study assets: computed over every study's DEG table, refreshed when any changes.

They depend on every partition of ``deg_results`` (lineage in the UI) but read it through
the catalog (DuckDB, only the columns needed) rather than loading each study's partition.
An eager automation condition re-materializes them after any study's ``deg_results``
partition is updated (sensor ``cross_study_automation``); ``dge run`` refreshes them after
its study runs.
"""

import dagster as dg
import pandas as pd

from dge_platform.catalog import connect
from dge_platform.cross_study import contrast_similarity as similarity_of
from dge_platform.cross_study import gene_recurrence as recurrence_of
from dge_platform.defs.resources import DgeHomeResource
from dge_platform.tables import TABLES

GROUP = "cross_study"
CODE_VERSION = "cross-study-1"
COLUMNS = ("study_id, contrast, cell_type, gene_id, gene_symbol, base_mean, log2_fold_change, "
           "stat, pvalue, padj, significant")


def _cross_study_asset(table: str, note: str):
    return dg.asset(name=table, io_manager_key="warehouse_io", group_name=GROUP,
                    kinds={"parquet"}, code_version=CODE_VERSION,
                    deps=[dg.AssetKey("deg_results")],
                    automation_condition=dg.AutomationCondition.eager(),
                    description=f"{TABLES[table].description} {note}".strip())


def _all_results(dge_home: DgeHomeResource) -> pd.DataFrame:
    con = connect(dge_home.home())
    try:
        return con.sql(f"select {COLUMNS} from deg_results").df()
    finally:
        con.close()


@_cross_study_asset("gene_recurrence", "")
def gene_recurrence(context: dg.AssetExecutionContext, dge_home: DgeHomeResource):
    results = _all_results(dge_home)
    table = recurrence_of(results)
    context.add_output_metadata({
        "n_genes": len(table), "n_studies": int(results["study_id"].nunique()),
        "top": dg.MetadataValue.md(table.head(20).to_markdown(index=False))})
    return table[TABLES["gene_recurrence"].stored_columns]


@_cross_study_asset("contrast_similarity", "")
def contrast_similarity(context: dg.AssetExecutionContext, dge_home: DgeHomeResource):
    results = _all_results(dge_home)
    table = similarity_of(results)
    context.add_output_metadata({"n_pairs": len(table)})
    return table[TABLES["contrast_similarity"].stored_columns]


cross_study_assets = dg.AssetSelection.groups(GROUP)

cross_study_job = dg.define_asset_job(
    "cross_study_job", selection=cross_study_assets,
    description="Refresh the cross-study tables from every study's DEG results.")

cross_study_automation = dg.AutomationConditionSensorDefinition(
    "cross_study_automation", target=cross_study_assets,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes the cross-study tables once any study's deg_results "
    "partition has been updated (eager automation condition).")
