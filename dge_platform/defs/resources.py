"""Resources: the data root, and the IO manager that owns every warehouse write."""

import dagster as dg
import pandas as pd

from dge_platform.catalog import refresh_catalog
from dge_platform.home import DgeHome, resolve_home
from dge_platform.warehouse import Warehouse


class DgeHomeResource(dg.ConfigurableResource):
    """The data root; empty ``root`` means ``$DGE_HOME`` or the repository's ``data/``."""

    root: str = ""

    def home(self) -> DgeHome:
        return resolve_home(self.root or None).ensure()


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores each table asset as one atomic Parquet file per study partition.

    The table is named by the asset key; after a write the DuckDB catalog is refreshed if
    that table had no data before, so the view picks it up.
    """

    dge_home: dg.ResourceDependency[DgeHomeResource]

    def _table(self, context: dg.OutputContext | dg.InputContext) -> str:
        return context.asset_key.path[-1]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        home = self.dge_home.home()
        written = Warehouse(home.warehouse).write(self._table(context), context.partition_key, obj)
        refresh_catalog(home)
        context.add_output_metadata({
            "dagster/row_count": written.rows,
            "path": dg.MetadataValue.path(str(written.path)),
            "size_bytes": written.bytes,
            "dagster/column_schema": dg.TableSchema(columns=[
                dg.TableColumn(str(name), str(dtype)) for name, dtype in obj.dtypes.items()]),
        })

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        home = self.dge_home.home()
        return Warehouse(home.warehouse).read(self._table(context), context.partition_key)


class DeseqResource(dg.ConfigurableResource):
    """PyDESeq2 settings shared by every fit; ``n_cpus=0`` means one per core (at most 4)."""

    n_cpus: int = 0

    def cpus(self) -> int:
        import os

        return self.n_cpus or max(1, min(4, os.cpu_count() or 1))
