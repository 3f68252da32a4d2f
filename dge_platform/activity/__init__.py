"""Activity: what a DEG list means. Pathway activity (PROGENy, decoupler's multivariate linear
model) and transcription factor activity (decoupler's univariate linear model on a signed
TF-target network) per contrast, and pathway and gene-set scores per sample.

Layer 5, a concern package: imports the layers below, never another kind or concern package.
"""
