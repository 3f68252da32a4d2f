"""The one Dagster ``Definitions`` of the platform (loaded by workspace.yaml and ``dge``).

The deployment picks, through the environment of every process that loads this module
(code server, run worker, Celery worker, step pod), how steps execute and how many CPUs a
heavy step uses:

- ``DGE_EXECUTOR``: ``multiprocess`` (default: steps as processes of the run's host),
  ``celery`` (steps as tasks on Celery workers; broker and result backend from
  ``DGE_CELERY_BROKER`` and ``DGE_CELERY_BACKEND``, read when a run starts) or ``k8s`` (a pod
  per step, ``dagster-k8s``'s ``k8s_job_executor``). Runs launched by ``dge run`` execute in
  its own process whatever the choice.
- ``DGE_N_CPUS``: the CPU budget per heavy step (resource ``deseq``) (default: one per core,
  at most 4).
"""

import os

import dagster as dg

from dge_platform.defs import ASSETS
from dge_platform.defs.automation import JOBS, SCHEDULES, study_sensor
from dge_platform.defs.cross_study import cross_study_automation, cross_study_job
from dge_platform.defs.resources import (
    CpuBudgetResource,
    DgeHomeResource,
    H5adIOManager,
    WarehouseIOManager,
)

EXECUTOR_ENV = "DGE_EXECUTOR"
N_CPUS_ENV = "DGE_N_CPUS"


def cpu_setting(value: str) -> int:
    """The ``DGE_N_CPUS`` value as the ``deseq`` resource's ``n_cpus`` (0: one per core)."""
    if not value.strip().isdigit():
        raise ValueError(f"{N_CPUS_ENV}={value!r}: expected a whole number of CPUs per heavy "
                         "step (0 or unset: one per core, at most 4)")
    return int(value)


def step_executor(choice: str) -> dg.ExecutorDefinition:
    """The executor of every job for a ``DGE_EXECUTOR`` value (module doc)."""
    if choice == "multiprocess":
        return dg.multi_or_in_process_executor
    if choice == "celery":
        from dagster_celery import celery_executor

        # The URLs may hold the broker's password: resolved from the environment at run start,
        # never stored in the run's config.
        return celery_executor.configured({"broker": {"env": "DGE_CELERY_BROKER"},
                                           "backend": {"env": "DGE_CELERY_BACKEND"}})
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={choice!r}: expected multiprocess, celery or k8s")


dge_home = DgeHomeResource()

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[*JOBS.values(), cross_study_job],
    sensors=[study_sensor, cross_study_automation],
    schedules=SCHEDULES,
    # The CPU budget keeps its resource key "deseq" (run configs and UI history use it).
    resources={"dge_home": dge_home,
               "deseq": CpuBudgetResource(n_cpus=cpu_setting(os.environ.get(N_CPUS_ENV, "0"))),
               "warehouse_io": WarehouseIOManager(dge_home=dge_home),
               "h5ad_io": H5adIOManager(dge_home=dge_home)},
    executor=step_executor(os.environ.get(EXECUTOR_ENV, "multiprocess")),
)
