"""dge-platform: differential gene expression studies as Dagster assets.

Science lives in plain modules (no Dagster imports) that work on DataFrames and AnnData;
``dge_platform.defs`` wraps them as assets, and ``dge_platform.definitions`` holds the one
``Definitions`` object.
"""
