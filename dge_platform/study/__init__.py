"""The study format: study.yaml as a typed model, its paths, its design formula, the kinds.

Layer 1: imports only ``_core``.
"""
