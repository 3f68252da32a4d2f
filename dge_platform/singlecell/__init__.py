"""Single-cell studies: cell checks and QC, embedding and annotation, markers, pseudobulks
and their DE per cell type.

Layer 5, a kind package: imports the layers below, never another kind or concern package.
"""
