"""The interactive report on small frames: the DEG explorer's data is the input's tested genes,
the top genes are labelled, plotly.js is inline once and nothing is fetched, enrichment terms
are named, counting statistics only show when reads were counted, the contents link every
section."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from dge_platform.outputs.interactive import N_LABELS, genes_tested, table_data, volcano_figure
from dge_platform.outputs.report import build_report, build_screen_report, top_terms
from dge_platform_tests._helpers import REPORT_STUDY, explorer_panels, report_frames


@pytest.fixture(scope="module")
def frames():
    return report_frames()


@pytest.fixture(scope="module")
def page(frames):
    return build_report(study=REPORT_STUDY, samples=frames["samples"],
                        sample_qc=frames["sample_qc"], results=frames["results"],
                        enrichment=frames["enrichment"], plots={})


def _column(table: dict, key: str) -> list:
    return table["columns"][table["keys"].index(key)]


def test_explorer_table_holds_every_tested_gene_to_four_digits(frames, page):
    results = frames["results"]
    panels = explorer_panels(page)
    assert len(panels) == 2
    for panel, (contrast, rows) in zip(panels, results.groupby("contrast", sort=False)):
        table = panel["table"]
        tested = rows.dropna(subset=["padj"]).set_index("gene_id")
        assert len(_column(table, "gene_id")) == len(tested) < len(rows), contrast
        assert set(_column(table, "gene_id")) == set(tested.index)
        padj = _column(table, "padj")
        assert padj == sorted(padj)  # smallest padj first
        for row in (0, len(padj) // 2, len(padj) - 1):
            gene = tested.loc[_column(table, "gene_id")[row]]
            for key in ("log2_fold_change", "padj", "base_mean", "pvalue"):
                assert _column(table, key)[row] == pytest.approx(gene[key], rel=5e-4)
                assert _column(table, key)[row] == float(f"{gene[key]:.4g}")
        assert table["labels"][:2] == ["symbol", "gene id"]
        # A gene without a symbol has a null, not the text "None"
        assert None in _column(table, "gene_symbol")


def test_volcano_and_ma_points_are_the_tested_genes_by_table_row(frames, page):
    rows = frames["results"].query("contrast == 'treated_vs_control'")
    panel = explorer_panels(page)[0]
    lfc, padj = (np.array(_column(panel["table"], k)) for k in ("log2_fold_change", "padj"))
    for figure in (panel["volcano"], panel["ma"]):
        traces = {t["name"].split(" (")[0]: t for t in figure["data"]}
        assert [t["type"] for t in figure["data"]] == ["scattergl"] * 3
        indices = [i for t in figure["data"] for i in t["customdata"]]
        assert sorted(indices) == list(range(rows["padj"].notna().sum()))
        up, down = (np.array(traces[d]["customdata"]) for d in ("up", "down"))
        assert (padj[up] < 0.05).all() and (lfc[up] > 0).all() and len(up)
        assert (padj[down] < 0.05).all() and (lfc[down] < 0).all() and len(down)
        assert "%{customdata[1]}" in traces["up"]["hovertemplate"]


def test_top_genes_are_labelled(frames, page):
    rows = frames["results"].query("contrast == 'treated_vs_control'")
    tested = rows.dropna(subset=["padj"]).sort_values("padj")
    top = tested["gene_symbol"].fillna(tested["gene_id"]).head(N_LABELS).tolist()
    figure = volcano_figure(rows, 0.05, 0.0, "treated_vs_control")
    assert [a.text for a in figure.layout.annotations] == top
    assert [a.x for a in figure.layout.annotations] == pytest.approx(
        tested["log2_fold_change"].head(N_LABELS).tolist())
    for panel in explorer_panels(page)[0]["volcano"], explorer_panels(page)[0]["ma"]:
        assert [a["text"] for a in panel["layout"]["annotations"]] == top


@pytest.mark.parametrize("lfc", [5.0, 1.0], ids=["at the plot's edge", "inside"])
def test_labels_of_genes_on_one_spot_do_not_overlap(lfc):
    """Ten genes on the same spot get label boxes (11 px text) that do not overlap."""
    rows = pd.DataFrame({"gene_id": [f"G{i}" for i in range(12)],
                         "gene_symbol": [f"SYMBOL{i}" for i in range(12)],
                         "log2_fold_change": [lfc] * 10 + [-5.0, 5.0],
                         "pvalue": [1e-25] * 10 + [1e-2, 1e-50],
                         "padj": [1e-24 * (i + 1) for i in range(10)] + [0.04, 1e-20]})
    annotations = volcano_figure(rows, 0.05, 0.0, "one spot").layout.annotations
    assert {a.text for a in annotations} == {f"SYMBOL{i}" for i in range(10)}
    boxes = [(a.ax - 3.6 * len(a.text) - 3, a.ay - 8, a.ax + 3.6 * len(a.text) + 3, a.ay + 8)
             for a in annotations]  # offsets from the one point, in pixels
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])]
    assert overlaps == []


def test_plotly_js_inline_once_and_nothing_fetched(page):
    assert page.count(get_plotlyjs()[:300]) == 1
    assert len(page) > len(get_plotlyjs())
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=['\"]?(https?:)?//", page, re.I)
    assert not re.search(r"<link[^>]*\shref=['\"]?(https?:)?//", page, re.I)
    assert not re.search(r"@import|url\(['\"]?https?:", page.split("<body>")[1])
    assert "cdn.plot.ly/plotly" not in page.split("<body>")[1]


def test_enrichment_terms_named_with_go_ids_in_their_own_column(frames, page):
    terms = top_terms(frames["enrichment"], "treated_vs_control")
    go = terms[terms["term_id"].notna()]
    assert set(go["term_id"]) == {"GO:0006955", "GO:0045087"}
    assert set(go["term_name"]) == {"immune response", "innate immune response"}
    hallmark = terms[terms["term_id"].isna()]
    assert set(hallmark["term_name"]) == {"HALLMARK_INTERFERON_ALPHA_RESPONSE"}
    assert "<td>GO:0006955</td>" in page and "<td>immune response</td>" in page
    # One dot plot per contrast, term names (not ids) on its axes
    assert page.count('class="plotly-graph-div"') == 2
    assert '"innate immune response"' in page and '"ticktext":["GO:' not in page


def test_counting_statistics_only_when_reads_were_counted(frames, page):
    qc_table = page.split("Quality control</h2>")[1].split("</table>")[0]
    assert "library_size" in qc_table and "pc1" in qc_table
    for column in ("count_source", "strand_sense_fraction", "assigned_fraction", "&lt;NA&gt;"):
        assert column not in qc_table
    assert ">Counting</h2>" not in page
    samples, sample_qc = frames["samples"].copy(), frames["sample_qc"].copy()
    for frame in (samples, sample_qc):
        frame["count_source"] = "bam"
        frame["assigned"] = pd.array(range(6), dtype="Int64")
        frame["assigned_fraction"] = pd.array([0.8] * 6, dtype="Float64")
    counted = build_report(study=REPORT_STUDY, samples=samples, sample_qc=sample_qc,
                           results=frames["results"], enrichment=frames["enrichment"], plots={})
    qc_table = counted.split("Quality control</h2>")[1].split("</table>")[0]
    assert "assigned_fraction" in qc_table and "count_source" in qc_table
    assert "strand_sense_fraction" not in qc_table and "&lt;NA&gt;" not in qc_table
    counting = counted.split(">Counting</h2>")[1].split("</table>")[0]
    assert "assigned" in counting and "mapping_rate" not in counting


def test_contents_link_every_section(page):
    anchors = re.findall(r"<h2 id='([^']+)'>", page)
    assert "<h2>" not in page
    assert anchors == ["design", "quality-control", "differential-expression", "enrichment"]
    contents = page.split("<nav class='toc'>")[1].split("</nav>")[0]
    assert re.findall(r"href='#([^']+)'", contents) == anchors


def test_table_data_skips_columns_without_values():
    rows = report_frames(n_genes=50)["results"].query("contrast == 'treated_vs_control'")
    table = table_data(genes_tested(rows.assign(log2_fold_change_shrunk=np.nan)))
    assert "log2_fold_change_shrunk" not in table["keys"]
    assert len(table["labels"]) == len(table["columns"]) == len(table["keys"]) == 6


def test_screen_explorer_holds_active_conditions_and_those_with_degs():
    frames = report_frames(n_genes=100, contrasts=("A_1uM", "A_10uM", "B_1uM", "B_10uM"))
    activity = pd.DataFrame({"contrast": ["A_1uM", "A_10uM", "B_1uM", "B_10uM"],
                             "n_deg": [0, 30, 2, 0], "active": [False, True, False, False]})
    well_qc = pd.DataFrame({"plate": "P1", "well": ["A01", "A02"], "well_type": "control",
                            "compound": "DMSO", "total_counts": 1000, "genes_detected": 90,
                            "reason": "", "passed": True, "cytotoxic": False})
    study = {"id": "screen", "title": "Screen", "organism": "Homo sapiens",
             "control": "DMSO", "design": "~ condition", "alpha": 0.05, "lfc_threshold": 0.0}

    def report(max_conditions: int) -> str:
        return build_screen_report(study=study, well_qc=well_qc, activity=activity,
                                   potency=pd.DataFrame(), similarity=pd.DataFrame(),
                                   results=frames["results"], plots={},
                                   max_conditions=max_conditions)

    page = report(20)
    options = re.findall(r"<option value='\d+'>([^<]+)</option>", page)
    assert options == ["A_10uM", "B_1uM"]  # active first, then by DEGs
    assert "(2 of 4 conditions active or with DEGs)</h2>" in page
    assert [p["volcano"]["layout"]["title"]["text"].split(" (")[0] for p in
            explorer_panels(page)] == ["Volcano: A_10uM", "Volcano: B_1uM"]
    capped = report(1)
    assert "Condition: <b>A_10uM</b>" in capped and "so are the 1 beyond the first 1" in capped
    assert len(explorer_panels(capped)) == 1
