"""The data root (``DGE_HOME``): registered studies, Parquet warehouse, catalog, Dagster home."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "DGE_HOME"
REPO_DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class DgeHome:
    """Locations under one data root."""

    root: Path

    @property
    def studies(self) -> Path:
        """Registered studies, one folder per study id."""
        return self.root / "studies"

    @property
    def warehouse(self) -> Path:
        """Parquet tables, hive-partitioned by study_id (the source of truth)."""
        return self.root / "warehouse"

    @property
    def catalog(self) -> Path:
        """DuckDB file holding SQL views over the warehouse."""
        return self.root / "catalog.duckdb"

    @property
    def dagster_home(self) -> Path:
        """Dagster instance storage: runs, events, partitions."""
        return self.root / "dagster_home"

    def study_dir(self, study_id: str) -> Path:
        return self.studies / study_id

    def ensure(self) -> DgeHome:
        """Create the folders and a Dagster instance config if missing."""
        for path in (self.studies, self.warehouse, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        config = self.dagster_home / "dagster.yaml"
        if not config.exists():
            # Telemetry off: the platform runs where outbound network is not allowed.
            config.write_text("telemetry:\n  enabled: false\n")
        return self


def resolve_home(root: str | os.PathLike | None = None) -> DgeHome:
    """The data root: ``root`` if given, else ``$DGE_HOME``, else the repository's ``data/``."""
    chosen = root or os.environ.get(ENV_VAR) or REPO_DATA
    return DgeHome(Path(chosen).expanduser().resolve())
