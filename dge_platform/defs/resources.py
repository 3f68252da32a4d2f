"""Resources: the data root, and the IO manager that owns every warehouse write."""

import os
from collections.abc import Mapping

import dagster as dg
import pandas as pd

from dge_platform.storage.catalog import refresh_catalog
from dge_platform.storage.home import DgeHome, resolve_home
from dge_platform.storage.warehouse import Warehouse


class DgeHomeResource(dg.ConfigurableResource):
    """The data root; empty ``root`` means ``$DGE_HOME`` or the repository's ``data/``.

    The warehouse location is ``$DGE_WAREHOUSE`` (see :mod:`dge_platform.storage.home`), not config:
    ``dge sql`` and notebooks read the same variable, so every entry point sees one warehouse
    (two would each rebuild the catalog for their own). S3 settings are environment too.
    """

    root: str = ""

    def home(self) -> DgeHome:
        return resolve_home(self.root or None).ensure()


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores each table asset as one atomic Parquet file per study partition.

    A step may cover several studies (a backfill batch): outputs are ``{study_id: frame}``
    (see ``defs/batch.py``) and inputs load as one frame for one study, ``{study_id: frame}``
    for several. The table is named by the asset key; after a step's writes the DuckDB catalog
    is refreshed once, picking up tables that had no data before.
    """

    dge_home: dg.ResourceDependency[DgeHomeResource]

    def _table(self, context: dg.OutputContext | dg.InputContext) -> str:
        return context.asset_key.path[-1]

    def handle_output(self, context: dg.OutputContext,
                      obj: Mapping[str, pd.DataFrame] | pd.DataFrame) -> None:
        """Write every study's partition of the output (a cross-study table: its file)."""
        table, home = self._table(context), self.dge_home.home()
        if not context.has_asset_partitions:
            written = Warehouse(home.warehouse).write(table, None, obj)
            refresh_catalog(home)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(written.path)),
                                         "dagster/row_count": written.rows})
            return
        keys = set(context.asset_partition_keys)
        if set(obj) != keys:
            # Dagster records a materialization for every partition of the step: writing
            # fewer would mark a study materialized without its table.
            raise ValueError(f"output '{table}' holds studies {sorted(obj)}, but the step "
                             f"materializes {sorted(keys)}")
        warehouse = Warehouse(home.warehouse)
        for study_id, frame in obj.items():
            warehouse.write(table, study_id, frame)
        refresh_catalog(home)
        # Row counts and schemas are per study (run_per_study); the folder holds every study.
        folder = warehouse.table_dir(table)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(folder))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """One study's table, or ``{study_id: table}`` when the step covers several studies."""
        warehouse = Warehouse(self.dge_home.home().warehouse)
        table, keys = self._table(context), context.asset_partition_keys
        if len(keys) == 1:
            return warehouse.read(table, keys[0])
        return {study_id: warehouse.read(table, study_id) for study_id in keys}


class H5adIOManager(dg.ConfigurableIOManager):
    """Stores cell-level assets as one AnnData (h5ad) per study partition, atomically.

    Outputs are ``{study_id: AnnData | None}``; None (a study without cells, e.g. bulk)
    removes that study's file. Inputs load like the warehouse IO manager's.
    """

    dge_home: dg.ResourceDependency[DgeHomeResource]

    def handle_output(self, context: dg.OutputContext, obj: Mapping[str, object]) -> None:
        name = context.asset_key.path[-1]
        warehouse = Warehouse(self.dge_home.home().warehouse)
        for study_id, adata in obj.items():
            if adata is None:
                warehouse.remove_h5ad(name, study_id)
            else:
                warehouse.write_h5ad(name, study_id, adata)
        context.add_output_metadata({"path": dg.MetadataValue.path(
            str(warehouse.table_dir(name)))})

    def load_input(self, context: dg.InputContext):
        warehouse = Warehouse(self.dge_home.home().warehouse)
        name, keys = context.asset_key.path[-1], context.asset_partition_keys
        studies = {study_id: _h5ad_or_none(warehouse, name, study_id) for study_id in keys}
        return studies[keys[0]] if len(keys) == 1 else studies


def _h5ad_or_none(warehouse: Warehouse, name: str, study_id: str):
    """A study's AnnData, or None for a study that has none (another kind)."""
    try:
        return warehouse.read_h5ad(name, study_id)
    except FileNotFoundError:
        return None


class CpuBudgetResource(dg.ConfigurableResource):
    """CPU budget of a heavy step (PyDESeq2 workers, salmon, BLAS and numba threads); ``n_cpus=0``
    means one per core this process may use (at most 4)."""

    n_cpus: int = 0

    def cpus(self) -> int:
        # The affinity mask, not the host's core count: a container or taskset may allow fewer.
        return self.n_cpus or max(1, min(4, len(os.sched_getaffinity(0))))
