"""Pipeline steps are plain functions: a study runs through them on frames, without Dagster,
and a bad study fails with the problems a user reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dge_platform.defs.steps import study_config
from dge_platform.pipelines import bulk, ingest
from dge_platform.pipelines.step import StepFailure
from dge_platform.storage.tables import TABLES
from dge_platform_tests.conftest import REPO, write_study

STEPS = ("ingest", "de", "bulk", "screen", "singlecell", "enrichment", "report", "cross_study")


def test_pipelines_import_no_dagster():
    code = ("import sys\n" + "".join(f"import dge_platform.pipelines.{m}\n" for m in STEPS)
            + "assert not [m for m in sys.modules if m.startswith('dagster')], 'dagster'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_bulk_study_runs_through_its_steps_on_frames(home):
    write_study(home.studies / "toy")
    logged = []
    tables = ingest.ingest(home, "toy", 1, logged.append).outputs
    assert set(tables) == {"studies", "samples", "genes", "raw_counts"}
    config = study_config(tables["studies"])

    de = bulk.deseq2(config, tables["raw_counts"], tables["samples"], tables["genes"], n_cpus=1)
    results = de.outputs["deg_results"]
    assert list(results.columns) == TABLES["deg_results"].stored_columns
    assert len(results) == len(tables["genes"]) * len(config.contrasts)
    assert {c.name: c.passed for c in de.checks} == {"size_factors_valid": True,
                                                     "deg_results_valid": True}
    assert de.metadata["deg_results"]["untested"] == {}

    qc = bulk.sample_qc(config, de.outputs["vst"], de.outputs["size_factors"], results,
                        de.outputs["gene_dispersions"], tables["samples"])
    assert len(qc.outputs["sample_qc"]) == len(tables["samples"])
    assert {"qc_distances.png", f"volcano_{config.contrasts[0].name}.png"} <= \
        set(qc.files["qc_plots"])

    corrected = bulk.batch_corrected(config, de.outputs["vst"], tables["samples"])
    assert len(corrected.outputs["batch_corrected"]) == len(de.outputs["vst"])
    assert corrected.metadata["batch_corrected"] == {"batch": "batch"}
    # No batch column: nothing to correct, said in the log, and no table (an empty one).
    unbatched = config.model_copy(update={"batch": None})
    corrected = bulk.batch_corrected(unbatched, de.outputs["vst"], tables["samples"])
    assert corrected.outputs == {}
    assert corrected.messages == [("info", "no batch column in study.yaml: nothing to correct")]


def test_a_bad_study_fails_the_step_with_every_problem(home):
    write_study(home.studies / "toy", config={"kind": "nonsense"})
    with pytest.raises(StepFailure) as failure:
        ingest.ingest(home, "toy", 1, print)
    assert "kind" in failure.value.description
    assert any("kind" in p for p in failure.value.metadata["problems"])


def test_design_diagnostics_warn_about_an_undeclared_batch():
    """A batch that drives PC1 but is not in the design is named in a warning; the declared
    condition is not."""
    import numpy as np
    import pandas as pd

    from dge_platform.pipelines.bulk import design_diagnostics
    from dge_platform.storage.frames import to_long
    from dge_platform.study.config import StudyConfig

    rng = np.random.default_rng(2)
    samples = pd.DataFrame({"sample": [f"s{i}" for i in range(12)],
                            "condition": ["ctrl", "treat"] * 6,
                            "run": ["r1"] * 6 + ["r2"] * 6})
    expression = pd.DataFrame(rng.normal(8, 0.3, size=(300, 12)),
                              index=[f"g{i}" for i in range(300)], columns=samples["sample"])
    expression.loc[:, samples["run"].eq("r2").to_numpy()] += rng.normal(0, 2, size=(300, 1))
    config = StudyConfig(id="toy", kind="bulk", organism="Homo sapiens", counts="c.tsv",
                         samples="s.tsv", design="~ condition",
                         contrasts=[{"name": "t", "factor": "condition", "level": "treat",
                                     "reference": "ctrl"}])
    result = design_diagnostics(config, to_long(expression, "vst"), samples)
    table = result.outputs["design_diagnostics"]
    warnings = [text for level, text in result.messages if level == "warning"]
    assert len(warnings) == 1 and "'run'" in warnings[0] and "PC1" in warnings[0]
    assert result.metadata["design_diagnostics"]["warnings"] == warnings
    shares = table[table["component"] == "variance_partition"].set_index("variable")
    assert shares.loc["run", "statistic"] > 0.5 > shares.loc["condition", "statistic"]
    assert not shares.loc["run", "in_design"] and shares.loc["condition", "in_design"]
    assert "pc_associations.png" in result.files["design_plots"]


def test_design_diagnostics_of_single_cell_run_per_cell_type():
    """Per cell type over its pseudobulks: a sample variable outside the design ('lane', not
    determined by donor or condition) that drives one cell type's expression is warned about
    for that cell type only; a donor-level variable is covered by the donor; the
    pseudobulks' cell count is a variable too."""
    import numpy as np
    import pandas as pd

    from dge_platform.pipelines.bulk import design_diagnostics
    from dge_platform.storage.frames import to_long
    from dge_platform.study.config import StudyConfig

    rng = np.random.default_rng(3)
    samples = pd.DataFrame({"sample": [f"d{d}_{c}" for d in range(8) for c in ("ctrl", "stim")],
                            "donor": [f"d{d}" for d in range(8) for _ in range(2)],
                            "condition": ["ctrl", "stim"] * 8,
                            "site": ["x"] * 8 + ["y"] * 8,
                            "lane": ["x", "y", "y", "x"] * 4})
    pb = pd.DataFrame([{"pseudobulk_sample": f"{t}|{s}", "cell_type": t, "sample": s,
                        "donor": s.split("_")[0], "condition": s.split("_")[1],
                        "n_cells": 100 + 10 * i + 5 * (i % 2),  # balanced over the lanes
                        "total_counts": 10**5 * (1 + i), "kept": True}
                       for t in ("A", "B") for i, s in enumerate(samples["sample"])])
    expression = pd.DataFrame(rng.normal(8, 0.3, size=(300, len(pb))),
                              index=[f"g{i}" for i in range(300)],
                              columns=pb["pseudobulk_sample"])
    lane_y = samples.loc[samples["lane"] == "y", "sample"]
    in_a_at_y = (pb["cell_type"].eq("A") & pb["sample"].isin(lane_y)).to_numpy()
    expression.loc[:, in_a_at_y] += rng.normal(0, 2, size=(300, 1))
    config = StudyConfig(id="toy", kind="singlecell", organism="Homo sapiens",
                         counts="cells.h5ad", design="~ donor + condition", donor="donor",
                         contrasts=[{"name": "t", "factor": "condition", "level": "stim",
                                     "reference": "ctrl"}])
    result = design_diagnostics(config, to_long(expression, "vst"), samples,
                                pseudobulk_samples=pb)
    table = result.outputs["design_diagnostics"]
    assert set(table["cell_type"]) == {"A", "B"}
    assert {"n_cells", "log10_counts", "lane", "site", "donor"} <= set(table["variable"])
    assert table.loc[table["variable"] == "site", "in_design"].all()  # donor-level
    warnings = [text for level, text in result.messages if level == "warning"]
    lane = [w for w in warnings if "'lane'" in w]  # B is noise: chance hits (p < 0.01) aside
    assert len(lane) == 1 and lane[0].startswith("A: PC1 (9")
    shares = table[table["component"] == "variance_partition"] \
        .set_index(["cell_type", "variable"])["statistic"]
    assert shares["A", "lane"] > 0.5 > shares["B", "lane"]
    assert {"pc_associations_A.png", "pc_associations_B.png"} == set(result.files["design_plots"])


def test_tf_activity_from_the_studys_own_network(tmp_path):
    """A study's tf_network scores its TFs (ulm): the planted activator on top, its heatmap
    and top-hit bars among the files; a human study also gets PROGENy pathways."""
    import numpy as np
    import pandas as pd

    from dge_platform.activity.models import progeny_model
    from dge_platform.pipelines.activity import contrast_activity
    from dge_platform.study.config import StudyConfig

    rng = np.random.default_rng(4)
    genes = list(progeny_model("Homo sapiens")["target"].drop_duplicates()[:2000])
    edges = [(f"TF{k}", genes[i], float(rng.choice([-1, 1])))
             for k in range(8) for i in rng.choice(len(genes), 40, replace=False)]
    network = pd.DataFrame(edges, columns=["source", "target", "weight"]) \
        .drop_duplicates(["source", "target"])
    network.to_csv(tmp_path / "net.tsv", sep="\t", index=False)
    stat = pd.Series(rng.normal(size=len(genes)), index=genes)
    tf3 = network[network["source"] == "TF3"].set_index("target")["weight"]
    stat[tf3.index] += 3 * tf3
    results = pd.DataFrame({"contrast": "t", "cell_type": None, "gene_symbol": genes,
                            "stat": stat.to_numpy(), "compound": None, "dose": np.nan})
    config = StudyConfig(id="toy", kind="bulk", organism="Homo sapiens", counts="c.tsv",
                         samples="s.tsv", design="~ condition", tf_network="net.tsv",
                         contrasts=[{"name": "t", "factor": "condition", "level": "treat",
                                     "reference": "ctrl"}])
    result = contrast_activity(config, results, tmp_path)
    tfs = result.outputs["tf_activity"].sort_values("score", ascending=False)
    assert tfs["source"].iloc[0] == "TF3" and tfs["padj"].iloc[0] < 1e-6
    assert (tfs["method"] == "ulm").all() and len(tfs) == 8
    assert {"tf_activity.png", "tf_top_hits.png", "pathway_activity.png"} <= \
        set(result.files["activity_plots"])
    assert {c.name: c.passed for c in result.checks} == {"pathway_activity_complete": True,
                                                         "tf_activity_complete": True}


def test_a_network_that_misses_the_studys_genes_fails_naming_the_file(tmp_path):
    import pandas as pd

    from dge_platform.pipelines.activity import contrast_activity
    from dge_platform.study.config import StudyConfig

    (tmp_path / "net.tsv").write_text("source\ttarget\tweight\n" + "".join(
        f"TF1\tENSG{i:011d}\t1\n" for i in range(10)))  # Ensembl ids, the study has symbols
    results = pd.DataFrame({"contrast": "t", "cell_type": None, "gene_symbol": ["TP53", "MDM2"],
                            "stat": [1.0, 2.0], "compound": None, "dose": float("nan")})
    config = StudyConfig(id="toy", kind="bulk", organism="Homo sapiens", counts="c.tsv",
                         samples="s.tsv", design="~ condition", tf_network="net.tsv",
                         contrasts=[{"name": "t", "factor": "condition", "level": "treat",
                                     "reference": "ctrl"}])
    with pytest.raises(StepFailure) as failure:
        contrast_activity(config, results, tmp_path)
    assert "net.tsv: column 'target': none of the network's 1 sources has 5 targets among " \
           "the study's gene symbols (0% of its targets found)" in failure.value.description
