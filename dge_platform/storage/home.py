"""The data root (``DGE_HOME``): registered studies, Parquet warehouse, catalog, Dagster home.

The warehouse lives under the root unless ``DGE_WAREHOUSE`` names another place: a local
folder or ``s3://bucket/prefix`` (see :mod:`dge_platform.storage.warehouse`). Studies, the catalog
and Dagster's storage stay local.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dge_platform._core.study_ids import is_valid_study_id
from dge_platform.storage.warehouse import StoragePath, warehouse_root

ENV_VAR = "DGE_HOME"
WAREHOUSE_ENV_VAR = "DGE_WAREHOUSE"
_CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = (_CHECKOUT / "data" if (_CHECKOUT / "pyproject.toml").is_file()
                else Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
                / "dge-platform")
"""Data root without ``DGE_HOME``: a source checkout's ``data/`` (the bundled studies), else
(an installed wheel) ``$XDG_DATA_HOME/dge-platform``."""


@dataclass(frozen=True)
class DgeHome:
    """Locations under one data root; ``warehouse_uri`` (empty: ``<root>/warehouse``) moves
    the warehouse elsewhere."""

    root: Path
    warehouse_uri: str = ""

    @property
    def studies(self) -> Path:
        """Registered studies, one folder per study id."""
        return self.root / "studies"

    @property
    def warehouse(self) -> StoragePath:
        """Parquet tables, hive-partitioned by study_id (the source of truth): a local
        ``Path``, or a ``UPath`` for ``s3://``.

        Raises
        ------
        ValueError
            For an unusable ``warehouse_uri``, naming ``DGE_WAREHOUSE`` (its usual source)
            but not the value, which may hold credentials.
        """
        if not self.warehouse_uri:
            return warehouse_root(self.root / "warehouse")
        try:
            return warehouse_root(self.warehouse_uri)
        except ValueError as exc:
            raise ValueError(f"{WAREHOUSE_ENV_VAR}: {exc}") from None

    @property
    def catalog(self) -> Path:
        """DuckDB file holding SQL views over the warehouse."""
        return self.root / "catalog.duckdb"

    @property
    def counting_cache(self) -> Path:
        """Per-sample results of counting BAM and FASTQ inputs (and salmon indexes), keyed
        by input content; safe to delete (samples are then counted again)."""
        return self.root / "cache" / "counting"

    @property
    def dagster_home(self) -> Path:
        """Dagster instance storage: runs, events, partitions."""
        return self.root / "dagster_home"

    def study_dir(self, study_id: str) -> Path:
        """A registered study's folder; refuses an id that could name a path elsewhere."""
        if not is_valid_study_id(study_id):
            raise ValueError(f"invalid study id {study_id!r}: use 1-63 lowercase letters, "
                             "digits, '_' and '-', starting with a letter or digit")
        return self.studies / study_id

    def ensure(self) -> DgeHome:
        """Create the folders and a Dagster instance config if missing."""
        for path in (self.studies, self.warehouse, self.dagster_home):
            if isinstance(path, Path):  # an S3 warehouse has no folders to create
                path.mkdir(parents=True, exist_ok=True)
        config = self.dagster_home / "dagster.yaml"
        if not config.exists():
            # Telemetry off: the platform runs where outbound network is not allowed.
            config.write_text("telemetry:\n  enabled: false\n")
        return self


def resolve_home(root: str | os.PathLike | None = None,
                 warehouse: str | os.PathLike | None = None) -> DgeHome:
    """The data root: ``root`` if given, else ``$DGE_HOME``, else :data:`DEFAULT_ROOT`;
    its warehouse: ``warehouse`` if given, else ``$DGE_WAREHOUSE``, else ``<root>/warehouse``."""
    chosen = root or os.environ.get(ENV_VAR) or DEFAULT_ROOT
    location = warehouse or os.environ.get(WAREHOUSE_ENV_VAR) or ""
    return DgeHome(Path(chosen).expanduser().resolve(), str(location))
