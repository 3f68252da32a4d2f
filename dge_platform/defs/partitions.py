"""One dynamic partition per registered study, keyed by study id."""

import dagster as dg

study_partitions = dg.DynamicPartitionsDefinition(name="studies")
