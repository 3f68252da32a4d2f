"""Bulk RNA-seq: sample QC (PCA, distances, outliers) and batch correction for display.

Layer 5, a kind package: imports the layers below, never another kind or concern package.
"""
