"""Across studies: gene recurrence, contrast similarity, signature search.

Layer 5, a concern package: imports the layers below, never another kind or concern package.
"""
