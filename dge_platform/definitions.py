"""The one Dagster ``Definitions`` of the platform (loaded by workspace.yaml and ``dge``)."""

import dagster as dg

from dge_platform.defs.automation import nightly_reprocess, study_job, study_sensor
from dge_platform.defs.cross_study import (
    contrast_similarity,
    cross_study_automation,
    cross_study_job,
    gene_recurrence,
)
from dge_platform.defs.bulk import batch_corrected, deseq2, sample_qc, study_report
from dge_platform.defs.enrichment import enrichment
from dge_platform.defs.ingest import ingest_study, study_inputs
from dge_platform.defs.screen import (
    compound_activity,
    compound_potency,
    compound_similarity,
    dose_response,
    well_qc,
)
from dge_platform.defs.resources import (
    DeseqResource,
    DgeHomeResource,
    H5adIOManager,
    WarehouseIOManager,
)
from dge_platform.defs.singlecell import cell_qc, marker_genes, pseudobulks, sc_processed

dge_home = DgeHomeResource()

defs = dg.Definitions(
    assets=[study_inputs, ingest_study, deseq2, batch_corrected, sample_qc,
            enrichment, study_report, well_qc, compound_activity, dose_response,
            compound_potency, compound_similarity, cell_qc, sc_processed, pseudobulks,
            marker_genes, gene_recurrence, contrast_similarity],
    jobs=[study_job, cross_study_job],
    sensors=[study_sensor, cross_study_automation],
    schedules=[nightly_reprocess],
    resources={"dge_home": dge_home, "deseq": DeseqResource(),
               "warehouse_io": WarehouseIOManager(dge_home=dge_home),
               "h5ad_io": H5adIOManager(dge_home=dge_home)},
)
