"""The report as a reader's browser shows it: opened from disk (file://) with the network cut,
it renders its plots and DEG table without a console error or a request, and the table
searches, sorts, pages and follows the contrast selector and plot clicks."""

from __future__ import annotations

import pytest

from dge_platform.outputs.report import build_report
from dge_platform_tests._helpers import REPORT_STUDY, report_frames
from dge_platform_tests.browser import chromium, console_errors, screenshot

N_GENES = 2000


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    frames = report_frames(n_genes=N_GENES)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(build_report(study=REPORT_STUDY, samples=frames["samples"],
                                 sample_qc=frames["sample_qc"], results=frames["results"],
                                 enrichment=frames["enrichment"], plots={}))
    return path, frames["results"]


def _until(driver, script: str, timeout: float = 60):
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def _rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.deg-table tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))")


def _column(driver, label: str) -> int:
    return driver.execute_script(
        "return [...document.querySelectorAll('.deg-table th')]"
        ".findIndex(th => th.textContent === arguments[0])", label)


def _click_header(driver, label: str) -> None:
    driver.execute_script("[...document.querySelectorAll('.deg-table th button')]"
                          ".find(b => b.textContent === arguments[0]).click()", label)


def test_report_works_offline_from_disk(report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    path, results = report
    first, second = (rows.dropna(subset=["padj"]) for _, rows in
                     results.groupby("contrast", sort=False))
    with chromium(offline=True) as driver:
        driver.get(path.as_uri())
        _until(driver, "return document.querySelectorAll('.deg-table tbody tr').length > 0")
        assert console_errors(driver) == []
        assert driver.execute_script(
            "return performance.getEntriesByType('resource').map(r => r.name)") == []

        # Both DEG plots drawn (WebGL) with every tested gene, and each enrichment dot plot
        assert driver.execute_script(
            "return document.querySelectorAll('.deg-plot canvas').length") >= 2
        for plot in (".deg-volcano", ".deg-ma"):
            assert driver.execute_script(
                f"return document.querySelector('{plot}')._fullData"
                ".reduce((n, t) => n + t.x.length, 0)") == len(first)
        assert driver.execute_script(
            "return [...document.querySelectorAll('.plotly-graph-div:not(.deg-plot)')]"
            ".map(g => g.querySelectorAll('.scatterlayer .point').length)") == [9, 9]
        labels = driver.execute_script("return document.querySelector('.deg-volcano')"
                                       ".layout.annotations.map(a => a.text)")
        top = first.sort_values("padj")
        assert labels == top["gene_symbol"].fillna(top["gene_id"]).head(10).tolist()

        # The table: 50 rows a page, smallest padj first
        rows = _rows(driver)
        padj = _column(driver, "padj")
        assert len(rows) == 50
        assert driver.find_element(By.CSS_SELECTOR, ".deg-count").text == \
            f"{len(first):,} tested genes"
        assert [float(r[padj]) for r in rows] == sorted(float(r[padj]) for r in rows)
        screenshot(driver, "report_bulk")

        # Search a symbol: that gene, its padj as deg_results has it (4 digits)
        gene = first[first["gene_symbol"].str.fullmatch(r"GENE1\d{3}", na=False)].iloc[3]
        search = driver.find_element(By.CSS_SELECTOR, ".deg-table input")
        search.send_keys(gene["gene_symbol"])
        rows = _rows(driver)
        assert len(rows) == 1 and rows[0][:2] == [gene["gene_symbol"], gene["gene_id"]]
        assert float(rows[0][padj]) == float(f"{gene['padj']:.4g}")
        assert float(rows[0][padj]) == pytest.approx(gene["padj"], rel=5e-4)
        lfc = _column(driver, "log2FC")
        assert float(rows[0][lfc]) == pytest.approx(gene["log2_fold_change"], rel=5e-4)
        screenshot(driver, "report_bulk_search")

        # Sort by a header, both ways; page on
        search.clear()
        search.send_keys(" ")  # an input event with an empty query: every gene again
        assert len(_rows(driver)) == 50
        _click_header(driver, "log2FC")
        ascending = [float(r[lfc]) for r in _rows(driver)]
        assert ascending == sorted(ascending)
        assert ascending[0] == float(f"{first['log2_fold_change'].min():.4g}")
        _click_header(driver, "log2FC")
        descending = [float(r[lfc]) for r in _rows(driver)]
        assert descending[0] == float(f"{first['log2_fold_change'].max():.4g}")
        assert descending == sorted(descending, reverse=True)
        driver.find_element(By.CSS_SELECTOR, ".deg-pager button[data-step='1']").click()
        assert driver.find_element(By.CSS_SELECTOR, ".deg-pager span").text.startswith(
            "rows 51-100, page 2 of ")

        # The other contrast: its plots and table
        Select(driver.find_element(By.CSS_SELECTOR, ".deg-choice select")).select_by_index(1)
        _until(driver, "return document.querySelector('.deg-count').textContent === "
                       f"'{len(second):,} tested genes'")
        assert driver.execute_script(
            "return document.querySelector('.deg-volcano').layout.title.text").startswith(
                "Volcano: high_vs_control")
        assert driver.execute_script(
            "return document.querySelector('.deg-ma')._fullData"
            ".reduce((n, t) => n + t.x.length, 0)") == len(second)

        # A click on a point looks its gene up in the table (the hover's fields are its row)
        clicked = driver.execute_script(
            "const gd = document.querySelector('.deg-volcano');"
            "const point = {customdata: gd.data[1].customdata[0]};"
            "gd.emit('plotly_click', {points: [point]}); return point.customdata")
        rows = _rows(driver)
        assert len(rows) == 1 and rows[0][1] == clicked[1] and float(rows[0][padj]) == clicked[2]
        assert console_errors(driver) == []
