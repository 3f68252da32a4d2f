"""``dge explore`` on a simulated combination screen: the combination page (summary, observed
vs expected scatter, non-additive genes, pathways), the screen study page's combinations and
MoA consistency, the compound page's activity retrieval, neighbour MoA classes and
combinations; what each shows equals the catalog, a bad or hostile combination name gets a
404 listing the combinations; then the combination page in Debian's chromium.

One warehouse for the file: a 1,500-gene screen of 4 compounds (one inactive) x 3 doses, two
combinations with planted interactions and two MoA classes, run once (about 25 s).
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pandas as pd
import pytest

from dge_platform_tests.conftest import dge
from dge_platform_tests.explorer.test_explorer import (
    INJECTIONS,
    _open,
    _plotted_points,
    _wait,
    catalog,
)
from dge_platform_tests.services import explore_server

STUDY = "combo"
COMBO = "CMP01_10uM+CMP02_10uM"
NONADDITIVE = ("synergistic", "antagonistic", "emergent")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """The simulated combination screen run into its own DGE_HOME; the explorer's data."""
    from dge_platform.explorer.data import ExplorerData
    from dge_platform.sim.screen import simulate_screen, write_screen_study
    from dge_platform.storage.home import resolve_home

    root = tmp_path_factory.mktemp("explore_combo") / "dge"
    screen = simulate_screen(n_genes=1500, n_controls=12, n_compounds=4, doses=(0.1, 1.0, 10.0),
                             n_replicates=3, inactive_compounds=1, n_combinations=2,
                             moa_groups=2, seed=4)
    folder = write_screen_study(tmp_path_factory.mktemp("incoming") / STUDY, screen, STUDY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        result = dge("add", str(folder), "--run")
        assert result.exit_code == 0, result.output[-3000:]
    return ExplorerData(resolve_home(root))


@pytest.fixture(scope="module")
def client(warehouse):
    from dge_platform.explorer.app import create_app

    return create_app(warehouse).server.test_client()


def components(tree):
    """Every Dash component of a page (depth first)."""
    if isinstance(tree, list | tuple):
        for item in tree:
            yield from components(item)
        return
    if not hasattr(tree, "to_plotly_json"):
        return
    yield tree
    yield from components(getattr(tree, "children", None))


def by_id(page: list, component_id: str):
    found = [c for c in components(page) if getattr(c, "id", None) == component_id]
    assert len(found) == 1, f"{component_id}: {len(found)} components"
    return found[0]


def html_rows(table) -> list[list[str]]:
    """The cells' text of a plain HTML table (links as their label)."""
    body = table.children[1]
    return [[_text(cell.children) for cell in row.children] for row in body.children]


def _text(content) -> str:
    return str(content.children) if hasattr(content, "children") else str(content)


def html_links(table) -> set[str]:
    return {c.href for c in components(table) if getattr(c, "href", None)}


def page_text(page) -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(page, cls=PlotlyJSONEncoder)


def points_per_class(warehouse, combination: str) -> dict[str, int]:
    rows = catalog(warehouse, "select coalesce(interaction_class, 'not tested') as c, "
                   "count(*) as n from combination_effects where study_id = ? and "
                   "combination = ? and observed_log2fc is not null and expected_log2fc is "
                   "not null group by 1", [STUDY, combination])
    return dict(zip(rows["c"], rows["n"].astype(int)))


# --- the data behind the pages

def test_combination_data_equals_the_catalog(warehouse):
    summary = warehouse.combinations(STUDY)
    assert summary["combination"].tolist() == ["CMP01_10uM+CMP02_10uM", "CMP01_10uM+CMP03_10uM"]
    assert warehouse.combination_names(STUDY) == summary["combination"].tolist()
    effects = warehouse.combination_effects(STUDY, COMBO)
    assert len(effects) == 1500 and effects["gene_id"].is_unique
    row = summary.set_index("combination").loc[COMBO]
    classes = effects["interaction_class"].value_counts()
    for name in (*NONADDITIVE, "additive"):
        assert classes[name] == row[f"n_{name}"], name
    # a compound's combinations: as either agent, or named by both (its compound page)
    by_compound = {c: warehouse.combinations(STUDY, c)["combination"].tolist()
                   for c in ("CMP01", "CMP02", "CMP03", "CMP04", "CMP01 + CMP03")}
    assert by_compound == {"CMP01": summary["combination"].tolist(), "CMP02": [COMBO],
                           "CMP03": ["CMP01_10uM+CMP03_10uM"], "CMP04": [],
                           "CMP01 + CMP03": ["CMP01_10uM+CMP03_10uM"]}
    assert warehouse.combination_names("nope") == []


def test_combination_page_summary_scatter_and_genes(warehouse):
    from dge_platform.explorer import pages

    page = pages.combination_page(warehouse, {}, STUDY, COMBO)
    row = catalog(warehouse, "select * from combinations where combination = ?",
                  [COMBO]).iloc[0]
    summary = page_text(by_id(page, "combination-summary"))
    assert ("Non-additive" if row["nonadditive"] else "Additive") in summary
    assert f"{row['n_nonadditive']:,} genes with an interaction" in summary
    assert f"empirical p = {row['pvalue']:.3g}" in summary
    assert f"95th percentile {row['null_threshold']:g}" in summary

    agents = by_id(page, "combination-agents")
    assert [r[:3] for r in html_rows(agents)] == [
        ["agent 1", "CMP01", "10 uM"], ["agent 2", "CMP02", "10 uM"],
        ["combination", "CMP01 + CMP02", "10 + 10 uM"]]
    assert {"/studies/combo/compounds/CMP01", "/studies/combo/compounds/CMP02",
            "/studies/combo/contrasts/CMP01_10uM",
            "/studies/combo/contrasts/CMP01_10uM%2BCMP02_10uM"} <= html_links(agents)
    degs = catalog(warehouse, "select count(*) filter (where significant and log2_fold_change "
                   "> 0) as up, count(*) filter (where significant and log2_fold_change < 0) "
                   "as down from deg_results where contrast = ?", [COMBO]).iloc[0]
    assert html_rows(agents)[2][4] == f"{degs['up']} / {degs['down']}"

    figure = by_id(page, "combination-scatter").figure
    traces = {t.name.split(" (")[0]: len(t.x) for t in figure.data}
    assert traces == points_per_class(warehouse, COMBO)
    first = next(t for t in figure.data if t.name.startswith("synergistic"))
    gene = catalog(warehouse, "select * from combination_effects where combination = ? and "
                   "gene_id = ?", [COMBO, first.customdata[0][1]]).iloc[0]
    assert gene["interaction_class"] == "synergistic"
    assert first.customdata[0][2] == f"{gene['log2_fold_change']:.3f}"
    assert first.customdata[0][3] == f"{gene['padj']:.3g}"
    assert float(first.y[0]) == pytest.approx(gene["observed_log2fc"], rel=1e-6)
    assert float(first.x[0]) == pytest.approx(gene["expected_log2fc"], rel=1e-6)

    grid = by_id(page, "nonadditive-genes")
    expected = catalog(warehouse, "select gene_id, interaction_class, padj from "
                       "combination_effects where combination = ? and interaction_class in "
                       "('synergistic', 'antagonistic', 'emergent') order by padj, gene_id",
                       [COMBO])
    assert [r["gene_id"] for r in grid.rowData] == expected["gene_id"].tolist()
    assert {r["class"] for r in grid.rowData} == set(NONADDITIVE)
    assert all(r["gene_id__href"] == f"/genes/{r['gene_id']}" for r in grid.rowData)
    assert all(c.get("sortable", True) for c in grid.columnDefs)
    assert grid.defaultColDef["sortable"]
    assert f"{len(expected)} genes synergistic" in page_text(by_id(page, "nonadditive-count"))
    # the screen has no pathway scores for simulated genes: no pathway section
    assert "Pathways and gene sets" not in page_text(page)


def test_combination_page_pathway_table_when_it_has_rows(warehouse, monkeypatch):
    from dge_platform.explorer import pages

    scores = pd.DataFrame({"collection": ["PROGENy"], "source": ["p53"], "observed": [1.2],
                           "expected": [0.4], "interaction": [0.8], "stat": [4.1],
                           "pvalue": [0.001], "padj": [0.01],
                           "interaction_class": ["synergistic"]})
    monkeypatch.setattr(warehouse, "pathway_combination_effects", lambda *_: scores)
    page = pages.combination_page(warehouse, {}, STUDY, COMBO)
    assert html_rows(by_id(page, "combination-pathways")) == [
        ["PROGENy", "p53", "1.2", "0.4", "0.8", "4.1", "0.001", "0.01", "synergistic"]]


def test_screen_study_page_lists_combinations_and_moa_consistency(warehouse):
    from dge_platform.explorer import pages

    page = pages.study_page(warehouse, {}, STUDY)
    combinations = by_id(page, "combinations-table")
    assert {"/studies/combo/combinations/CMP01_10uM%2BCMP02_10uM",
            "/studies/combo/combinations/CMP01_10uM%2BCMP03_10uM"} <= html_links(combinations)
    shown = {r[0]: r for r in html_rows(combinations)}
    stored = catalog(warehouse, "select * from combinations").set_index("combination")
    for name, row in stored.iterrows():
        assert shown[name][7:9] == [str(row["n_deg"]), str(row["n_nonadditive"])]
    consistency = catalog(warehouse, "select name, map, padj from moa_retrieval where level = "
                          "'consistency' order by name")
    moa = html_rows(by_id(page, "moa-consistency"))
    assert [r[0] for r in moa] == consistency["name"].tolist() and len(moa) >= 1
    assert [r[2] for r in moa] == [f"{v:.4g}" for v in consistency["map"]]
    active = catalog(warehouse, "select count(*) filter (where retrieved) as r, count(*) as n "
                     "from moa_retrieval where level = 'activity'").iloc[0]
    assert (f"Activity: {active['r']} of {active['n']} conditions retrieved"
            in page_text(by_id(page, "moa-summary")))


def test_compound_page_retrieval_neighbour_moa_and_combinations(warehouse):
    from dge_platform.explorer import pages

    page = pages.compound_page(warehouse, {}, STUDY, "CMP01")
    retrieval = catalog(warehouse, "select name, map, padj, retrieved from moa_retrieval "
                        "where level = 'activity' and compound = 'CMP01' "
                        "order by try_cast(dose as double)")
    rows = html_rows(by_id(page, "compound-retrieval"))
    assert [r[0] for r in rows] == retrieval["name"].tolist() == [
        "CMP01_0.1uM", "CMP01_1uM", "CMP01_10uM"]
    assert [r[1] for r in rows] == ["0.1", "1", "10"]  # a number, however it was stored
    assert [(r[6], r[9]) for r in rows] == [(f"{m:.4g}", str(bool(x))) for m, x in
                                            zip(retrieval["map"], retrieval["retrieved"])]
    assert "MoA class: MOA1" in page_text(by_id(page, "retrieval-summary"))

    neighbours = by_id(page, "compound-neighbours")
    stored = catalog(warehouse, "select contrast, rank, neighbor_moa, moa_hypothesis from "
                     "compound_similarity where compound = 'CMP01' order by dose, rank")
    header = [_text(th.children) for th in neighbours.children[0].children.children]
    assert {"neighbor moa", "moa hypothesis", "moa hypothesis padj"} <= set(header)
    shown = html_rows(neighbours)
    column = header.index("neighbor moa")
    assert [r[column] for r in shown] == stored["neighbor_moa"].fillna("").tolist()
    assert [r[header.index("moa hypothesis")] for r in shown] == stored[
        "moa_hypothesis"].fillna("").tolist()

    assert html_links(by_id(page, "compound-combinations")) == {
        "/studies/combo/combinations/CMP01_10uM%2BCMP02_10uM",
        "/studies/combo/combinations/CMP01_10uM%2BCMP03_10uM"}
    # the combination's own compound page links to it; an inactive compound has none
    combined = pages.compound_page(warehouse, {}, STUDY, "CMP01 + CMP02")
    assert html_links(by_id(combined, "compound-combinations")) == {
        "/studies/combo/combinations/CMP01_10uM%2BCMP02_10uM"}
    assert "compound-combinations" not in page_text(
        pages.compound_page(warehouse, {}, STUDY, "CMP04"))


# --- URLs: real, absent, hostile

def test_combination_urls_real_absent_and_hostile(warehouse, client):
    for url in (f"/studies/{STUDY}/combinations/{quote(COMBO, safe='')}",
                f"/studies/{STUDY}/combinations/{COMBO}",  # '+' left as it is
                f"/studies/{STUDY}", f"/studies/{STUDY}/compounds/CMP01",
                f"/studies/{STUDY}/compounds/{quote('CMP01 + CMP02', safe='')}"):
        assert client.get(url).status_code == 200, url
    missing = client.get(f"/studies/{STUDY}/combinations/CMP01_10uM+CMP04_10uM")
    body = missing.get_data(as_text=True)
    assert missing.status_code == 404
    assert "There is no combination &#x27;CMP01_10uM+CMP04_10uM&#x27; in combo" in body
    assert "Combinations that exist" in body
    assert "/studies/combo/combinations/CMP01_10uM%2BCMP03_10uM" in body
    assert client.get("/studies/nope/combinations/" + quote(COMBO)).status_code == 404

    before = catalog(warehouse, "select (select count(*) from combination_effects) as e, "
                     "(select count(*) from combinations) as c").iloc[0].tolist()
    for attack in [*INJECTIONS, "' union select combination from combinations --",
                   "..%2F..%2F..%2Fetc%2Fpasswd"]:
        q = quote(attack, safe="")
        for url in (f"/studies/{STUDY}/combinations/{q}", f"/studies/{q}/combinations/{q}"):
            response = client.get(url)
            assert response.status_code == 404, url
            assert "root:" not in response.get_data(as_text=True)
        from dge_platform.explorer.app import render

        text = page_text(render(warehouse, f"/studies/{STUDY}/combinations/{q}", ""))
        assert "Not found" in text and "Something went wrong" not in text
    assert catalog(warehouse, "select (select count(*) from combination_effects) as e, "
                   "(select count(*) from combinations) as c").iloc[0].tolist() == before


# --- in a real browser

@pytest.fixture(scope="module")
def server(warehouse):
    """``dge explore`` on a free loopback port over the combination screen."""
    with explore_server(warehouse.home.root) as base:
        yield base


def _trace_points(driver, graph_id: str) -> dict[str, int]:
    """Points plotly drew per trace of a graph, by trace name (without its count)."""
    return driver.execute_script(
        "const gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "if (!gd || !gd._fullData) { return {}; }"
        "const out = {}; gd._fullData.forEach(t => {"
        "  if (t.x) { out[t.name.split(' (')[0]] = t.x.length; } }); return out;", graph_id)


def test_browser_combination_page(warehouse, server):
    """Study page -> the combination: the scatter draws every class's genes, the table holds
    the non-additive genes (sortable), a click on a point opens the gene."""
    from selenium.webdriver.common.by import By

    from dge_platform_tests.browser import chromium, console_errors, screenshot

    expected = points_per_class(warehouse, COMBO)
    nonadditive = sum(n for c, n in expected.items() if c in NONADDITIVE)
    with chromium() as browser:
        _open(browser, f"{server}/studies/{STUDY}", "#combinations-table")
        _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#moa-consistency"))
        # (the contrasts table above links the same name to the contrast)
        browser.find_element(By.CSS_SELECTOR, "#combinations-table").find_element(
            By.LINK_TEXT, COMBO).click()
        _wait(browser, lambda: _plotted_points(browser, "combination-scatter")
              == sum(expected.values()))
        assert browser.current_url.endswith(f"/studies/{STUDY}/combinations/"
                                            f"{quote(COMBO, safe='')}")
        assert _trace_points(browser, "combination-scatter") == expected
        assert browser.execute_script(  # WebGL, as the volcano
            "return document.querySelector('#combination-scatter .js-plotly-plot')"
            "._fullData.every(t => t.type === 'scattergl');")
        count = ("try { return dash_ag_grid.getApi('nonadditive-genes')"
                 ".getDisplayedRowCount(); } catch (e) { return -1; }")
        _wait(browser, lambda: browser.execute_script(count) == nonadditive)
        assert browser.find_element(By.ID, "combination-summary").text.startswith(
            "Non-additive: ")
        # sorted by the interaction log2FC, descending: the grid's first row is the largest
        browser.execute_script("dash_ag_grid.getApi('nonadditive-genes').applyColumnState("
                               "{state: [{colId: 'interaction_log2fc', sort: 'desc'}]});")
        top = catalog(warehouse, "select gene_id from combination_effects where combination "
                      "= ? and interaction_class in ('synergistic', 'antagonistic', "
                      "'emergent') order by log2_fold_change desc limit 1",
                      [COMBO])["gene_id"].iloc[0]
        _wait(browser, lambda: browser.execute_script(
            "return dash_ag_grid.getApi('nonadditive-genes').getDisplayedRowAtIndex(0)"
            ".data.gene_id;") == top)
        time.sleep(1)  # the grid's rows move to their sorted places (animated)
        screenshot(browser, "explore_combination")
        assert not console_errors(browser)

        # a click on the scatter's point opens the gene
        browser.execute_script(
            "const gd = document.querySelector('#combination-scatter .js-plotly-plot');"
            "const c = gd.data.findIndex(t => t.name.startsWith('synergistic'));"
            "gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: 0,"
            "  x: gd.data[c].x[0], y: gd.data[c].y[0], customdata: gd.data[c].customdata[0],"
            "  data: gd.data[c], fullData: gd._fullData[c]}]});")
        _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#gene-results"))
        assert "/genes/G" in browser.current_url

        _open(browser, f"{server}/studies/{STUDY}/compounds/CMP01", "#compound-combinations")
        _wait(browser, lambda: _plotted_points(browser, "dose-curves") > 0)
        assert browser.find_element(By.ID, "compound-retrieval").text.count("CMP01_") == 3
        screenshot(browser, "explore_compound_moa")
        assert not console_errors(browser)
