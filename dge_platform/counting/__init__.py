"""Count matrices from reads: BAM fragment counting, salmon, tximport, the per-sample cache.

Layer 5, a concern package: imports the layers below, never another kind or concern package.
"""
