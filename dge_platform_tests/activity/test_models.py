"""The shipped TF network: a valid signed network by the platform's own reader, human only,
with the textbook edges of the regulators the bundled studies move."""

from __future__ import annotations

from dge_platform.activity.models import collectri_network
from dge_platform.readers.networks import read_network
from dge_platform.resources import resource_path


def test_shipped_collectri_passes_the_network_reader():
    path = resource_path("collectri", "collectri_human.tsv.gz")
    network, problems = read_network(path, "collectri_human.tsv.gz")
    assert problems == [] and len(network) > 40_000
    assert set(network["weight"]) == {-1.0, 1.0}
    assert network["source"].nunique() > 1_100 and {"AP1", "NFKB"} <= set(network["source"])
    # every gene named by symbol: no UniProt accession or complex id left over
    assert not network["source"].str.contains(":").any()
    assert not network["target"].str.fullmatch(r"[OPQ][0-9][A-Z0-9]{3}[0-9]").any()


def test_collectri_is_human_and_carries_the_known_regulation():
    assert collectri_network("Mus musculus") is None and collectri_network("Danio rerio") is None
    network = collectri_network("Homo sapiens")
    edges = network.set_index(["source", "target"])["weight"]
    activated = [("NR3C1", "FKBP5"), ("NR3C1", "TSC22D3"), ("NR3C1", "PER1"),
                 ("TP53", "CDKN1A"), ("TP53", "MDM2"), ("IRF9", "IFIT1"), ("MYC", "TERT")]
    assert all(edges[edge] == 1 for edge in activated)
    assert (edges.loc["REST"] < 0).mean() > 0.8  # a repressor's targets are mostly repressed
    assert network is not collectri_network("human")  # callers may change their copy
