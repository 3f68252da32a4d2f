"""Readers: files to frames or AnnData, each returning ``(value, problems)``.

Layer 3: imports the layers below (``_core``, ``study``, ``storage``).
"""
