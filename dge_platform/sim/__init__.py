"""Simulators with planted truth, used by tests and benchmarks (like scanpy.datasets /
decoupler.ds).

- :mod:`~dge_platform.sim.screen`: DRUG-seq dose-response screens (counts, plate map, true
  fold changes and EC50s).
- :mod:`~dge_platform.sim.singlecell`: 10x-like single-cell UMI counts with per-cell-type
  differential expression.
- :mod:`~dge_platform.sim.bam`: a synthetic GTF and paired-end BAM (multi-mappers, strandedness).
- :mod:`~dge_platform.sim.reads`: paired-end FASTQ from a synthetic transcriptome, with true
  transcript and gene counts.
- :mod:`~dge_platform.sim.soak`: versions of a small bulk study for the soak (re-materialize
  while inputs change), and the warehouse and catalog invariants it checks.

Each is seeded: the same arguments give the same output. ``bam``, ``reads`` and
``singlecell`` also run as scripts (``.venv/bin/python -m dge_platform.sim.bam --help``).
Layer 8: they use the platform's packages below them, never Dagster, ``defs``, ``runner`` or
``pipelines``.
"""
