"""Storage: the table contract (SQL schema), the Parquet warehouse, the DuckDB catalog, the
data root.

Layer 2: imports only ``_core`` and ``study``.
"""
