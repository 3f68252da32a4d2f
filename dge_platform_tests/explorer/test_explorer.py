"""``dge explore`` on the bundled studies (airway, Kang single-cell, the MAC-seq plate): what
each page shows equals the catalog, bad URLs get a page saying what exists, hostile input
never reaches SQL or the file system; then the real thing in Debian's chromium.

One warehouse for the whole file (a run of the three studies), read-only for every test.
"""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import pandas as pd
import pytest

from dge_platform_tests.conftest import copy_bundled, dge
from dge_platform_tests.services import explore_server

STUDIES = ("airway", "kang2018_pbmc", "macseq_pmmsq033")
AIRWAY = ("airway", "dex_trt_vs_untrt")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """The three bundled studies run into one DGE_HOME; the explorer's data over it."""
    from dge_platform.explorer.data import ExplorerData
    from dge_platform.storage.home import resolve_home

    root = tmp_path_factory.mktemp("explore") / "dge"
    incoming = tmp_path_factory.mktemp("incoming")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        for study in STUDIES:
            assert dge("add", str(copy_bundled(study, incoming))).exit_code == 0
        result = dge("run")
        assert result.exit_code == 0, result.output[-3000:]
    return ExplorerData(resolve_home(root))


@pytest.fixture(scope="module")
def client(warehouse):
    from dge_platform.explorer.app import create_app

    return create_app(warehouse).server.test_client()


def catalog(warehouse, sql: str, params: list | None = None) -> pd.DataFrame:
    return warehouse.frame(sql, params or [])


def render_text(warehouse, url: str) -> str:
    """The page of a URL as the app builds it, flattened to its text."""
    from plotly.utils import PlotlyJSONEncoder

    from dge_platform.explorer.app import render

    path, _, search = url.partition("?")
    return json.dumps(render(warehouse, path, search), cls=PlotlyJSONEncoder)


# --- the data behind the pages

def test_studies_list_counts_equal_the_catalog(warehouse):
    studies = warehouse.studies().set_index("study_id")
    assert list(studies.index) == sorted(STUDIES)
    degs = catalog(warehouse, "select study_id, count(*) filter (where significant) as n, "
                   "count(distinct contrast) as c from deg_results group by 1").set_index(
        "study_id")
    assert studies["degs"].to_dict() == degs["n"].to_dict()
    assert studies["contrasts"].to_dict() == degs["c"].to_dict()
    assert studies.loc["macseq_pmmsq033", "contrasts"] == 78
    assert studies.loc["airway", "kind"] == "bulk"


def test_deg_page_filters_sorts_and_pages_on_the_server(warehouse):
    from dge_platform.explorer.data import DegFilter

    filters = DegFilter.from_query({"padj": "0.01", "lfc": "2", "direction": "up",
                                    "filter": json.dumps({"base_mean": {
                                        "type": "greaterThan", "filter": 100}})})
    rows, total = warehouse.deg_page(*AIRWAY, None, filters,
                                     [{"colId": "log2_fold_change", "sort": "desc"}], 10, 30)
    expected = catalog(warehouse, "select gene_id, log2_fold_change from deg_results where "
                       "study_id = 'airway' and padj <= 0.01 and log2_fold_change >= 2 and "
                       "base_mean > 100 order by log2_fold_change desc, gene_id")
    assert total == len(expected) > 30
    assert rows["gene_id"].tolist() == expected["gene_id"].iloc[10:30].tolist()


def test_a_gene_across_studies_by_symbol_or_id(warehouse):
    symbol = catalog(warehouse, "select gene_symbol from deg_results where study_id = "
                     "'kang2018_pbmc' and gene_symbol in (select gene_symbol from deg_results "
                     "where study_id = 'airway' and significant) and gene_symbol in (select "
                     "gene_symbol from deg_results where study_id = 'macseq_pmmsq033') "
                     "order by 1 limit 1")["gene_symbol"].iloc[0]
    by_symbol = warehouse.resolve_gene(symbol.lower())  # case-insensitive when exact fails
    gene_ids = sorted(by_symbol["gene_id"].unique())
    results = warehouse.gene_results(gene_ids, sorted(by_symbol["gene_symbol"].dropna().unique()))
    assert set(results["study_id"]) == set(STUDIES)
    assert len(results) == len(catalog(warehouse, "select 1 from deg_results where gene_symbol "
                                       "= ?", [symbol]))
    text = render_text(warehouse, f"/genes/{symbol}")
    assert f"Tested in 3 studies, {len(results)} contrasts" in text


def test_multi_contrast_filter_up_in_one_unchanged_in_another(warehouse):
    hits = warehouse.multi_filter([("up", "airway", "dex_trt_vs_untrt", None),
                                   ("unchanged", "kang2018_pbmc", "stim_vs_ctrl",
                                    "CD14+ Monocytes")], 0.05, 1.0)
    genes = set(hits["gene_symbol"])
    expected = catalog(warehouse, """
        select gene_symbol from deg_results where study_id = 'airway' and padj < 0.05
          and log2_fold_change >= 1 and gene_symbol is not null
        intersect
        select gene_symbol from deg_results where study_id = 'kang2018_pbmc'
          and cell_type = 'CD14+ Monocytes' and gene_symbol is not null
          and not coalesce(padj < 0.05 and abs(log2_fold_change) >= 1, false)""")
    assert genes == set(expected["gene_symbol"]) and len(genes) > 5
    url = ("/filter?up=" + quote("airway|dex_trt_vs_untrt|") + "&unchanged="
           + quote("kang2018_pbmc|stim_vs_ctrl|CD14+ Monocytes"))
    assert f'"{len(genes)} genes"' in render_text(warehouse, url)


# --- bad URLs and hostile input

@pytest.mark.parametrize("url, exists", [
    ("/studies/nope", "airway"),
    ("/studies/airway/contrasts/nope", "dex_trt_vs_untrt"),
    ("/studies/kang2018_pbmc/contrasts/stim_vs_ctrl?cell_type=Neurons", "CD14+ Monocytes"),
    ("/studies/macseq_pmmsq033/plates/P9", "PMMSq033"),
    ("/studies/macseq_pmmsq033/compounds/Aspirin", "CAMPTOTHECIN"),
    ("/genes/NOTAGENE1", "All studies"),
    ("/nothing/here", "All studies"),
])
def test_unknown_things_get_a_404_that_says_what_exists(client, url, exists):
    response = client.get(url)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "There is no" in body and exists in body


def test_pages_of_real_things_are_served(client):
    for url in ("/", "/studies/airway", f"/studies/{AIRWAY[0]}/contrasts/{AIRWAY[1]}",
                "/studies/kang2018_pbmc/contrasts/stim_vs_ctrl?cell_type=B%20cells",
                "/genes/FKBP5", "/filter", "/studies/macseq_pmmsq033/plates/PMMSq033"):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("url, message", [
    ("/studies/airway/contrasts/dex_trt_vs_untrt?padj=abc", "padj='abc' is not a number"),
    ("/studies/airway/contrasts/dex_trt_vs_untrt?padj=2", "out of range"),
    ("/studies/airway/contrasts/dex_trt_vs_untrt?direction=sideways", "choose any, up or down"),
    ("/studies/airway/contrasts/dex_trt_vs_untrt?filter={oops", "not valid JSON"),
    ("/studies/airway/contrasts/dex_trt_vs_untrt?sort=padj;drop", "give <column>:asc"),
    ("/studies/airway?colour=nonsense", "is not a sample variable"),
    ("/filter?up=airway", "is not a contrast"),
])
def test_malformed_filters_get_a_clear_message(warehouse, url, message):
    text = render_text(warehouse, url)
    assert message in text and "Cannot apply this filter" in text


INJECTIONS = ["' or '1'='1", "x'); drop table deg_results; --", "1 union select * from genes",
              "\" or 1=1 --", "%27%20or%201=1"]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_sql_injection_in_every_parameter_is_only_a_value(warehouse, client, attack):
    from dge_platform.explorer.data import DegFilter, FilterError

    before = catalog(warehouse, "select count(*) as n from deg_results")["n"].iloc[0]
    q = quote(attack, safe="")
    for url in (f"/studies/{q}", f"/studies/airway/contrasts/{q}", f"/genes/{q}",
                f"/studies/macseq_pmmsq033/plates/{q}",
                f"/studies/macseq_pmmsq033/compounds/{q}",
                f"/studies/airway/contrasts/dex_trt_vs_untrt?cell_type={q}"):
        response = client.get(url)
        assert response.status_code == 404, url
    for key in ("search", "padj", "lfc", "direction", "sort", "filter", "colour"):
        text = render_text(warehouse, f"/studies/airway/contrasts/dex_trt_vs_untrt?{key}={q}")
        assert "Something went wrong" not in text, key
    searched = DegFilter.from_query({"search": attack})
    assert warehouse.deg_page(*AIRWAY, None, searched, None, 0, 50)[1] == 0
    with pytest.raises(FilterError):  # a column name from the user is refused, not quoted
        DegFilter.from_query({"filter": json.dumps({attack: {"type": "equals",
                                                             "filter": 1}})}).sql()
    response = client.get(f"/download?study={q}&contrast={q}")
    assert response.status_code == 404
    assert catalog(warehouse, "select count(*) as n from deg_results")["n"].iloc[0] == before


@pytest.mark.parametrize("url", [
    "/assets/../../../../etc/passwd", "/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/_dash-component-suites/../../../../etc/passwd", "/studies/..%2F..%2Fetc%2Fpasswd",
    "/genes/..%2F..%2F..%2Fetc%2Fpasswd", "/download?study=../../etc/passwd&contrast=x",
    "/studies/airway/contrasts/..%2F..%2F..%2Fetc%2Fpasswd",
])
def test_path_traversal_reads_no_file(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404)
    assert "root:" not in response.get_data(as_text=True)


def test_download_is_the_filtered_view_as_csv_and_excel(warehouse, client):
    query = "study=airway&contrast=dex_trt_vs_untrt&padj=0.001&direction=down&sort=padj:asc"
    csv = client.get(f"/download?{query}&format=csv")
    assert csv.status_code == 200 and "attachment" in csv.headers["Content-Disposition"]
    table = pd.read_csv(io.StringIO(csv.get_data(as_text=True)))
    expected = catalog(warehouse, "select gene_id, padj from deg_results where study_id = "
                       "'airway' and padj <= 0.001 and log2_fold_change < 0 "
                       "order by padj, gene_id")
    assert table["gene_id"].tolist() == expected["gene_id"].tolist()
    assert table["padj"].to_numpy() == pytest.approx(expected["padj"].to_numpy(), rel=1e-12)
    xlsx = client.get(f"/download?{query}&format=xlsx")
    sheet = pd.read_excel(io.BytesIO(xlsx.get_data()))
    assert sheet["gene_id"].tolist() == expected["gene_id"].tolist()
    assert client.get(f"/download?{query}&format=pdf").status_code == 400
    assert client.get(f"/download?{query}&padj=zero").status_code == 400


# --- in a real browser

@pytest.fixture(scope="module")
def server(warehouse):
    """``dge explore`` on a free loopback port over the test warehouse."""
    with explore_server(warehouse.home.root) as base:
        yield base


@pytest.fixture(scope="module")
def browser(server):
    from dge_platform_tests.browser import chromium

    with chromium() as driver:
        yield driver


def _open(driver, url: str, ready: str):
    """Load a URL and wait until the CSS selector ``ready`` is on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))


def _wait(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition())


def _plotted_points(driver, graph_id: str) -> int:
    """Points plotly drew in a graph (its traces as plotted: typed arrays decoded)."""
    return driver.execute_script(
        "const gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "if (!gd || !gd._fullData) { return 0; }"
        "return gd._fullData.reduce((n, t) => n + (t.visible !== false && t.x ?"
        " (t.z ? t.z.length * t.z[0].length : t.x.length) : 0), 0);", graph_id)


def test_browser_studies_to_gene_in_three_clicks(warehouse, server, browser):
    """Studies -> airway -> its contrast -> (volcano click) the gene page; the numbers shown
    are the catalog's, and the page logs no error."""
    from selenium.webdriver.common.by import By

    from dge_platform_tests.browser import console_errors, screenshot

    _open(browser, server + "/", "#studies-table")
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies-table tbody tr")
    shown = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[5]
             .text for r in rows}
    degs = warehouse.studies().set_index("study_id")["degs"]
    assert {k: int(v) for k, v in shown.items()} == {k: int(v) for k, v in degs.items()}
    screenshot(browser, "explore_studies")

    browser.find_element(By.LINK_TEXT, "airway").click()
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#contrasts-table"))
    _wait(browser, lambda: _plotted_points(browser, "pca") == 8)
    screenshot(browser, "explore_study_airway")

    browser.find_element(By.LINK_TEXT, AIRWAY[1]).click()
    tested = catalog(warehouse, "select count(padj) as n from deg_results where "
                     "study_id = 'airway'")["n"].iloc[0]
    _wait(browser, lambda: _plotted_points(browser, "volcano") == tested)
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#deg-grid .ag-row"))
    screenshot(browser, "explore_contrast_airway")
    assert not console_errors(browser)

    top = catalog(warehouse, "select gene_id, gene_symbol, log2_fold_change, padj from "
                  "deg_results where study_id = 'airway' order by padj limit 1").iloc[0]
    # A click on the volcano's point: plotly's click event, as a mouse click emits it.
    browser.execute_script(
        "const gd = document.querySelector('#volcano .js-plotly-plot');"
        "for (let c = 0; c < gd.data.length; c++) {"
        "  const i = gd.data[c].customdata.findIndex(d => d[1] === arguments[0]);"
        "  if (i >= 0) { gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: i,"
        "    x: gd.data[c].x[i], y: gd.data[c].y[i], customdata: gd.data[c].customdata[i],"
        "    data: gd.data[c], fullData: gd._fullData[c]}]}); break; } }", top["gene_id"])
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#gene-results"))
    assert browser.current_url.endswith(f"/genes/{top['gene_id']}")
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR,
                                                     "#gene-results tbody tr td")]
    assert f"{top['log2_fold_change']:.4g}" in cells and f"{top['padj']:.4g}" in cells
    screenshot(browser, "explore_gene")


def test_browser_filter_the_deg_table_and_share_the_link(warehouse, server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from dge_platform_tests.browser import screenshot

    # The studies page's gene search opens the gene page (any case).
    _open(browser, server + "/", "#gene-search")
    browser.find_element(By.ID, "gene-search").send_keys("fkbp5", Keys.ENTER)
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#gene-results"))
    assert browser.find_element(By.CSS_SELECTOR, "main h1").text == "FKBP5"

    _open(browser, f"{server}/studies/airway/contrasts/{AIRWAY[1]}", "#deg-grid .ag-row")
    browser.find_element(By.CSS_SELECTOR, "#f-padj").send_keys("0.01")
    browser.find_element(By.CSS_SELECTOR, "#f-lfc").send_keys("2")
    browser.find_element(By.ID, "f-apply").click()
    expected = catalog(warehouse, "select count(*) as n from deg_results where study_id = "
                       "'airway' and padj <= 0.01 and abs(log2_fold_change) >= 2")["n"].iloc[0]
    _wait(browser, lambda: browser.find_element(By.ID, "deg-count").text
          == f"{expected:,} genes match")
    assert "padj=0.01" in browser.current_url and "lfc=2" in browser.current_url
    screenshot(browser, "explore_contrast_filtered")
    shared = browser.current_url  # the same view from the link alone
    _open(browser, shared, "#deg-grid .ag-row")
    _wait(browser, lambda: browser.find_element(By.ID, "deg-count").text
          == f"{expected:,} genes match")
    link = browser.find_element(By.ID, "download-csv").get_attribute("href")
    assert "padj=0.01" in link and "study=airway" in link


def test_browser_screen_and_single_cell_pages(warehouse, server, browser):
    from selenium.webdriver.common.by import By

    from dge_platform_tests.browser import console_errors, screenshot

    wells = catalog(warehouse, "select count(*) as n, count(*) filter (where not passed) as f "
                    "from well_qc where study_id = 'macseq_pmmsq033'").iloc[0]
    _open(browser, f"{server}/studies/macseq_pmmsq033/plates/PMMSq033", "#plate-summary")
    assert browser.find_element(By.ID, "plate-summary").text.startswith(
        f"{wells['n']} wells, {wells['f']} failed QC")
    _wait(browser, lambda: _plotted_points(browser, "plate-total_counts") >= 384)
    screenshot(browser, "explore_plate")

    _open(browser, f"{server}/studies/macseq_pmmsq033/compounds/CAMPTOTHECIN",
          "#compound-activity")
    # per gene: its wells, the fitted curve (200 points) and the BMD diamond with its bar
    fits = catalog(warehouse, "select count(*) as n from (select 1 from dose_response where "
                   "study_id = 'macseq_pmmsq033' and compound = 'CAMPTOTHECIN' and fit_ok and "
                   "bmd is not null limit 6)")["n"].iloc[0]
    _wait(browser, lambda: _plotted_points(browser, "dose-curves") > 0)
    assert browser.execute_script(
        "const gd = document.querySelector('#dose-curves .js-plotly-plot');"
        "return gd._fullData.filter(t => t.error_x && t.error_x.visible).length;") == fits
    pods = catalog(warehouse, "select pod_type from compound_pod where study_id = "
                   "'macseq_pmmsq033' and compound = 'CAMPTOTHECIN'")["pod_type"]
    shown = browser.find_element(By.ID, "pods").text
    assert all(pod_type in shown for pod_type in pods) and len(pods) >= 2
    browser.execute_script("document.querySelector('#dose-curves').scrollIntoView();")
    screenshot(browser, "explore_compound")

    cells = catalog(warehouse, "select count(*) as n from cell_types where study_id = "
                    "'kang2018_pbmc'")["n"].iloc[0]
    _open(browser, f"{server}/studies/kang2018_pbmc", "#contrasts-table")
    _wait(browser, lambda: _plotted_points(browser, "umap") == min(cells, 20_000))
    screenshot(browser, "explore_singlecell")
    assert not console_errors(browser)
