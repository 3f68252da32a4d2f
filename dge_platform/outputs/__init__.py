"""Outputs people read: plots, the HTML report, exports.

Layer 7: imports every layer below.
"""
