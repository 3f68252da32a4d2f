"""Pipeline steps: one plain-Python function per asset, taking and returning frames (no
Dagster), so every step is testable on its own. ``defs/`` maps Dagster onto them.

Layer 8: imports every layer below; never Dagster.
"""
