"""Asset steps over one or several study partitions: backfills run batches of studies.

A backfill of many studies launches one run per batch of up to ``MAX_STUDIES_PER_RUN``
contiguous study partitions; Dagster passes the batch as a partition key range (run tags
``dagster/asset_partition_range_start`` / ``_end``) and each asset's step covers all of it.
Every asset body still handles one study; ``run_per_study`` runs it for each study of the
step and merges what the bodies yield:

- **outputs**: one ``dg.Output`` per output whose value is ``{study_id: frame}``; the warehouse
  IO manager writes each study's partition. Dagster records a materialization of every
  partition in the step for each yielded output, so a study that produces no table for an
  output (another kind, no batch column) gets an empty table with the table's columns: its
  materialization is then true, and the catalog view simply has no rows for it. A cell-level
  (h5ad) output gets None, which removes any file the study had.
- **metadata**: a study's output metadata (and its row count and schema) goes on that study's
  materialization event only.
- **asset checks**: Dagster records one evaluation per check and step, without a partition,
  so a step over several studies yields one result per check that passes only if every study
  passed, with each study's metadata under ``<study_id>/<key>``.
- **files** (plots, reports) are written only after every study of the step succeeded.

A study that fails fails the whole step, naming the study. Nothing of that step is written
for any study of the batch (tables and files are written only after all bodies ran), so every
study keeps its previous tables; the studies' downstream steps do not run.
"""

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from dge_platform.storage.tables import TABLES, TableSpec
from dge_platform.storage.warehouse import Warehouse

MAX_STUDIES_PER_RUN = 10
"""Studies per backfill run. Larger batches save per-run overhead (process start, code
load, one step per asset instead of one per study and asset); smaller ones limit what a
single failing study holds back, since the whole batch's run fails with it."""

# backfill_policy is a beta parameter of @asset in Dagster 1.13; we depend on it knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_STUDIES_PER_RUN)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

HEAVY_POOL = "dge_heavy"
"""Concurrency pool of the steps that fit models or hold a study's cells in memory. Its limit
(``concurrency: pools:`` in dagster.yaml, or ``dagster instance concurrency set dge_heavy N``)
caps how many of them run at once across all runs and workers; other steps are not limited."""
HEAVY_STEP_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}
"""What a heavy step's pod asks for under ``k8s_job_executor``: the CPU request matches
``DGE_N_CPUS=2`` (deploy/helm/values.yaml); memory fits a 100,000-cell study (5.6 GB peak)."""
HEAVY_STEP = {"pool": HEAVY_POOL, "op_tags": {
    "dagster-k8s/config": {"container_config": {"resources": HEAVY_STEP_RESOURCES}}}}
"""Keyword arguments of a heavy asset's decorator: its pool and its pod resources."""


@contextmanager
def cpu_budget(n_cpus: int) -> Iterator[None]:
    """Cap the threads a heavy step starts while the block runs.

    Parameters
    ----------
    n_cpus
        Threads allowed to BLAS and OpenMP pools and to numba parallel loops (GSEA); the
        ``deseq`` resource's budget, which PyDESeq2's worker processes also take. Without
        it each library starts one thread per host core, and concurrent steps on one host
        (or a pod on a large node) oversubscribe it.
    """
    import numba
    from threadpoolctl import threadpool_limits

    # numba.set_num_threads applies to the calling thread and cannot exceed its pool size.
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n_cpus, numba.config.NUMBA_NUM_THREADS)))
    try:
        with threadpool_limits(limits=n_cpus):
            yield
    finally:
        numba.set_num_threads(before)


@dataclass(frozen=True)
class StudyFiles:
    """A study's full set of files in one warehouse folder (plots, report), replacing its
    older files there; an empty ``files`` removes them."""

    folder: str
    files: dict[str, bytes]


StudyEvent = dg.Output | dg.AssetCheckResult | dg.MaterializeResult | StudyFiles
StudyTables = Any
"""An asset input: one study's frame, or ``{study_id: frame}`` when the step covers several
studies (Dagster cannot type-check a union, so it stays ``Any`` for Dagster)."""
StepEvent = dg.Output | dg.AssetCheckResult | dg.MaterializeResult
StudyBody = Callable[..., Iterable[StudyEvent]]
"""``body(study_id, **inputs)``: one study's computation, yielding ``StudyEvent``s."""


@dataclass
class _StudyResult:
    """What one study's body yielded."""

    outputs: dict[str, dg.Output] = field(default_factory=dict)
    checks: list[dg.AssetCheckResult] = field(default_factory=list)
    files: list[StudyFiles] = field(default_factory=list)
    materialized: dg.MaterializeResult | None = None

    def add(self, event: StudyEvent) -> None:
        if isinstance(event, dg.Output):
            self.outputs[event.output_name] = event
        elif isinstance(event, dg.AssetCheckResult):
            self.checks.append(event)
        elif isinstance(event, dg.MaterializeResult):
            self.materialized = event
        elif isinstance(event, StudyFiles):
            self.files.append(event)
        else:
            raise TypeError(f"a study body yielded {type(event).__name__}")


def for_study(value: Any, study_id: str) -> Any:
    """One study's value of an input: the IO manager loads ``{study_id: frame}`` when the step
    covers several studies, the frame itself for one."""
    return value[study_id] if isinstance(value, dict) else value


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags selecting the partition key range ``first``..``last``."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def run_per_study(context: dg.AssetExecutionContext, body: StudyBody, *,
                  warehouse: Warehouse | None = None,
                  checks_after_write: Callable[[str], Iterable[dg.AssetCheckResult]] | None = None,
                  **inputs: Any) -> Iterator[StepEvent]:
    """Run ``body`` for every study of the step and yield the merged results (module doc).

    ``inputs`` are the asset's loaded inputs; each study's body gets its own slice.
    ``warehouse`` receives the bodies' ``StudyFiles``. ``checks_after_write(study_id)``
    evaluates checks that re-read what the IO manager just wrote.
    """
    keys = list(context.partition_keys)
    results = {study_id: _run_body(body, study_id, len(keys), inputs) for study_id in keys}
    _write_files(warehouse, results)
    if any(r.materialized for r in results.values()):
        yield _merged_materialization(context, results)
    else:
        yield from _merged_outputs(context, results)
    checks = {study_id: list(r.checks) for study_id, r in results.items()}
    if checks_after_write:
        for study_id in keys:
            checks[study_id].extend(checks_after_write(study_id))
    yield from merge_checks(checks)


def _run_body(body: StudyBody, study_id: str, n_studies: int,
              inputs: Mapping[str, Any]) -> _StudyResult:
    result = _StudyResult()
    try:
        for event in body(study_id, **{name: for_study(v, study_id) for name, v in inputs.items()}):
            result.add(event)
    except Exception as err:
        if n_studies == 1:
            raise  # the run is that study's: the error already belongs to it
        text = err.description if isinstance(err, dg.Failure) else f"{type(err).__name__}: {err}"
        raise dg.Failure(
            description=f"study '{study_id}' failed (this step covers {n_studies} studies; "
            f"none of them were written): {text}",
            metadata=err.metadata if isinstance(err, dg.Failure) else None) from err
    return result


def _write_files(warehouse: Warehouse | None, results: Mapping[str, _StudyResult]) -> None:
    for study_id, result in results.items():
        for item in result.files:
            if warehouse is None:
                raise ValueError("a study body yielded files but run_per_study got no warehouse")
            warehouse.replace_files(item.folder, study_id, item.files)


def _merged_outputs(context: dg.AssetExecutionContext,
                    results: Mapping[str, _StudyResult]) -> Iterator[dg.Output]:
    """One output per selected asset, ``{study_id: frame}``, with per-study metadata."""
    for name, key in context.assets_def.keys_by_output_name.items():
        if key not in context.selected_asset_keys:
            continue
        frames = {}
        for study_id, result in results.items():
            output = result.outputs.get(name)
            table = TABLES.get(key.path[-1])
            # A cell-level (h5ad) output is None for a study without cells.
            frame = output.value if output else (table.empty() if table else None)
            frames[study_id] = frame
            context.add_asset_metadata({**(_table_metadata(table, frame) if table else {}),
                                        **(output.metadata if output else {})},
                                       asset_key=key, partition_key=study_id)
        yield dg.Output(frames, name)


def described_schema(table: TableSpec, columns: Iterable[tuple[str, str]]) -> dg.TableSchema:
    """Columns (name, type) with their descriptions from the table contract (a study's own
    sample-sheet columns have none), as the UI shows them."""
    return dg.TableSchema(columns=[
        dg.TableColumn(name, kind, description=table.column_description(name) or None)
        for name, kind in columns])


def _table_metadata(table: TableSpec, frame: pd.DataFrame) -> dict[str, Any]:
    """A study's row count and the columns it holds."""
    return {"dagster/row_count": len(frame),
            "dagster/column_schema": described_schema(
                table, ((str(name), str(dtype)) for name, dtype in frame.dtypes.items()))}


def _merged_materialization(context: dg.AssetExecutionContext,
                            results: Mapping[str, _StudyResult]) -> dg.MaterializeResult:
    """For assets without an IO manager: each study's MaterializeResult metadata on its own
    partition's event."""
    for study_id, result in results.items():
        if result.materialized is None:
            raise ValueError(f"the body yielded no MaterializeResult for study '{study_id}'")
        context.add_asset_metadata(dict(result.materialized.metadata or {}),
                                   partition_key=study_id)
    return dg.MaterializeResult()


def merge_checks(checks: Mapping[str, list[dg.AssetCheckResult]]) -> Iterator[dg.AssetCheckResult]:
    """One result per check over the step's studies: passed only if every study that
    evaluated it passed; with several studies, each one's metadata is keyed by study id."""
    by_name: dict[str, dict[str, dg.AssetCheckResult]] = {}
    for study_id, results in checks.items():
        for result in results:
            by_name.setdefault(result.check_name, {})[study_id] = result
    for name, per_study in by_name.items():
        if len(checks) == 1:
            yield from per_study.values()
            continue
        failed = [s for s, r in per_study.items() if not r.passed]
        yield dg.AssetCheckResult(
            check_name=name, asset_key=next(iter(per_study.values())).asset_key,
            passed=not failed,
            description=f"failed for {', '.join(failed)}" if failed else None,
            metadata={"failed_studies": dg.MetadataValue.json(failed),
                      "studies_checked": dg.MetadataValue.json(list(per_study)),
                      **{f"{s}/{k}": v for s, r in per_study.items()
                         for k, v in r.metadata.items()}})


def study_batches(partition_order: Sequence[str], study_ids: Iterable[str],
                  size: int = MAX_STUDIES_PER_RUN) -> list[list[str]]:
    """Split studies into runs of at most ``size``, each a contiguous stretch of the
    partition order: Dagster orders dynamic partitions by when they were added, and a run's
    range covers every key between its two ends, so a gap (a study not asked for) starts a
    new run."""
    position = {key: i for i, key in enumerate(partition_order)}
    batches: list[list[str]] = []
    for study_id in sorted(set(study_ids), key=position.__getitem__):
        last = batches[-1] if batches else []
        if 0 < len(last) < size and position[last[-1]] + 1 == position[study_id]:
            last.append(study_id)
        else:
            batches.append([study_id])
    return batches


def batch_target(batch: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """The partition key and tags of a run over ``batch``: one study runs as its partition
    (as the sensor does), several as a partition key range."""
    if len(batch) == 1:
        return batch[0], {}
    return None, range_tags(batch[0], batch[-1])


def batch_label(batch: Sequence[str]) -> str:
    """``study`` for one study, ``first..last`` for a range."""
    return batch[0] if len(batch) == 1 else f"{batch[0]}..{batch[-1]}"
