"""Compound screens (DRUG-seq, MAC-seq): plate maps, well QC, activity calls, dose-response,
compound similarity.

Layer 5, a kind package: imports the layers below, never another kind or concern package.
"""
