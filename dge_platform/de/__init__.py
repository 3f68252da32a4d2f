"""The DESeq2 engine (R parity) and the PyDESeq2 fallback. It knows no study.yaml: a contrast
is anything with ``name``, ``factor``, ``level`` and ``reference`` (:mod:`.contrast`).

Layer 4: imports ``_core`` and the sample-sheet helpers of ``study`` only.
"""
