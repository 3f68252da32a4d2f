"""dge-platform: differential gene expression studies as Dagster assets.

The package is layered; a module imports only from layers below its own (and from its own
package), and only the top layer imports Dagster. ``dge_platform_tests/test_layers.py``
enforces it, function-local imports included, and finds no import cycle.

====  =====================================================================================
 9    ``defs/``, ``definitions``, ``runner`` (Dagster); ``registry``, ``cli``
 8    ``pipelines``: one plain function per asset, frames in and out
 7    ``outputs``: plots, report, export
 6    ``validation``: a study folder to a validated study, every problem at once
 5    kind and concern packages, never importing each other: ``bulk``, ``screen``,
      ``singlecell``, ``counting``, ``enrichment``, ``cross_study``
 4    ``de``: the DESeq2 engine (knows no study.yaml)
 3    ``readers``: files to frames
 2    ``storage``: table contract, warehouse, catalog, data root
 1    ``study``: the study format and the kinds
 0    ``_core``: problems, locks, ids, memo
====  =====================================================================================

``resources/`` holds the shipped reference data and ``sim/`` the simulators that tests and
benchmarks use.
"""
