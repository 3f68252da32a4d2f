"""A study's TF network file: every problem named with the file and column, and the file
read as source, target, signed weight."""

from __future__ import annotations

import gzip

import pytest

from dge_platform.readers.networks import read_network
from dge_platform.validation import validate_study
from dge_platform_tests.conftest import write_study


def _net(tmp_path, text: str, name: str = "net.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return read_network(path, name)


def test_a_valid_network_with_mor_as_weight(tmp_path):
    net, problems = _net(tmp_path, "source,target,mor\nTP53,MDM2,1\nTP53,CDKN1A,1\n"
                                   "MYC,CDKN1A,-1\n", "net.csv")
    assert problems == []
    assert net.to_dict("list") == {"source": ["TP53", "TP53", "MYC"],
                                   "target": ["MDM2", "CDKN1A", "CDKN1A"],
                                   "weight": [1.0, 1.0, -1.0]}


@pytest.mark.parametrize("text, expected", [
    ("tf\ttarget\tweight\nTP53\tMDM2\t1\n", "net.tsv: header: missing column(s): source"),
    ("source\ttarget\nTP53\tMDM2\n", "net.tsv: header: missing column(s): weight"),
    ("source\ttarget\tweight\nTP53\tMDM2\tup\nTP53\tBAX\t0\n",
     "net.tsv: column 'weight': 2 weight(s) are not signed non-zero numbers: up, 0"),
    ("source\ttarget\tweight\nTP53\tMDM2\t1\nTP53\tMDM2\t-1\n",
     "net.tsv: columns 'source', 'target': 1 edge(s) given more than once: TP53 -> MDM2"),
    ("source\ttarget\tweight\n", "net.tsv: has no data rows"),
    ("source,target,weight\nTP53,MDM2,1\n", "net.tsv: header: expected tab-separated values"),
])
def test_bad_networks_are_named(tmp_path, text, expected):
    net, problems = _net(tmp_path, text)
    assert net is None
    assert str(problems[0]).startswith(expected), problems


def test_a_binary_network_file_is_refused(tmp_path):
    path = tmp_path / "net.tsv"
    path.write_bytes(b"PK\x03\x04 not a table")
    assert "zip archive" in str(read_network(path, "net.tsv")[1][0])
    gz = tmp_path / "net.tsv.gz"
    gz.write_bytes(gzip.compress(b"source\ttarget\tweight\nA\tB\t-1\n"))
    assert read_network(gz, "net.tsv.gz")[1] == []


def test_study_yaml_tf_network_is_validated(tmp_path):
    folder = write_study(tmp_path / "toy", config={"tf_network": "net.tsv"})
    assert "study.yaml: tf_network: 'net.tsv' not found" in \
        [str(p).split(" -> ")[0] for p in validate_study(folder).problems]
    (folder / "net.tsv").write_text("source\ttarget\tweight\nTF1\tg1\tx\n")
    problems = [str(p) for p in validate_study(folder).problems]
    assert problems and problems[0].startswith("net.tsv: column 'weight'")
    (folder / "net.tsv").write_text("source\ttarget\tweight\nTF1\tg1\t1\n")
    assert validate_study(folder).problems == []
