"""One dynamic partition set per study kind, one partition per registered study."""

import dagster as dg

from dge_platform.study.kinds import KINDS

STUDY_PARTITIONS = {kind: dg.DynamicPartitionsDefinition(name=spec.partitions)
                    for kind, spec in KINDS.items()}
"""The studies of each kind (``bulk_studies``, ``screens``, ``singlecell_studies``)."""


def kind_of(instance: dg.DagsterInstance, study_id: str) -> str | None:
    """The kind whose partitions hold the study, if it was registered."""
    return next((kind for kind, partitions in STUDY_PARTITIONS.items()
                 if instance.has_dynamic_partition(partitions.name, study_id)), None)
