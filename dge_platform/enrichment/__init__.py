"""Enrichment: ORA and GSEA prerank against shipped or user gene set collections, gene ids.

Layer 5, a concern package: imports the layers below, never another kind or concern package.
"""
