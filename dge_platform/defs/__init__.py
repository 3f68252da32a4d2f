"""The only Dagster code of the platform: one asset graph per study kind, the cross-study
assets on top, resources, automation. Assets are thin: each calls one step of
``dge_platform.pipelines`` and maps its result (``defs/steps.py``)."""

import dagster as dg

from dge_platform.defs import bulk, cross_study, screen, singlecell
from dge_platform.storage.tables import TABLES
from dge_platform.study.kinds import KINDS

KIND_ASSETS = {bulk.KIND: bulk.ASSETS, screen.KIND: screen.ASSETS,
               singlecell.KIND: singlecell.ASSETS}
"""Each kind's graph; one entry per kind of ``study.kinds.KINDS``."""
if set(KIND_ASSETS) != set(KINDS):
    raise RuntimeError(f"defs/ has asset graphs for {sorted(KIND_ASSETS)} but study.kinds "
                       f"declares {sorted(KINDS)}: give each kind its graph in KIND_ASSETS")

ASSETS = [asset for assets in KIND_ASSETS.values() for asset in assets] + cross_study.ASSETS
"""Every asset of the platform, as ``definitions.py`` loads them."""


def tables_of(kind: str) -> set[str]:
    """The catalog tables a study of the kind writes (one Parquet file each)."""
    return {key.path[-1] for asset in KIND_ASSETS[kind] if isinstance(asset, dg.AssetsDefinition)
            for key in asset.keys} & set(TABLES)
