// Client-side pieces of dge explore: URL sync of the DEG grid, filter form, gene links.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  explore: {
    // The grid's sort and column filters into the address bar (replaceState: no re-render,
    // but a copied link reproduces the view) and into the download links.
    syncGrid: function (request, key) {
      const noUpdate = window.dash_clientside.no_update;
      if (!request || !key) { return [noUpdate, noUpdate, noUpdate]; }
      const params = new URLSearchParams(window.location.search);
      const sort = (request.sortModel || [])[0];
      if (sort) { params.set("sort", sort.colId + ":" + sort.sort); } else { params.delete("sort"); }
      const filter = request.filterModel || {};
      if (Object.keys(filter).length) { params.set("filter", JSON.stringify(filter)); }
      else { params.delete("filter"); }
      const text = params.toString();
      window.history.replaceState(window.history.state, "",
        window.location.pathname + (text ? "?" + text : ""));
      const download = new URLSearchParams(params);
      download.set("study", key.study_id);
      download.set("contrast", key.contrast);
      if (key.cell_type) { download.set("cell_type", key.cell_type); }
      download.set("format", "csv");
      const csv = "/download?" + download.toString();
      download.set("format", "xlsx");
      return [text, csv, "/download?" + download.toString()];
    },
    // Apply or clear the DEG filters: a new query string (the page re-renders from it).
    applyFilters: function (apply, clear, s1, s2, s3, search, padj, lfc, direction) {
      const params = new URLSearchParams(window.location.search);
      const cleared = window.dash_clientside.callback_context.triggered_id === "f-clear";
      const values = {search: search, padj: padj, lfc: lfc,
                      direction: direction === "any" ? "" : direction};
      for (const [name, value] of Object.entries(values)) {
        if (!cleared && value && String(value).trim()) { params.set(name, String(value).trim()); }
        else { params.delete(name); }
      }
      if (cleared) { params.delete("filter"); params.delete("sort"); }
      const text = params.toString();
      return text ? "?" + text : "";
    }
  }
});

// AG Grid cell renderer: a gene symbol links to its gene page.
var dagcomponentfuncs = (window.dashAgGridComponentFunctions =
  window.dashAgGridComponentFunctions || {});
dagcomponentfuncs.GeneLink = function (props) {
  const gene = props.value || (props.data && props.data.gene_id);
  if (!gene) { return null; }
  const href = "/genes/" + encodeURIComponent(gene);
  return React.createElement("a", {href: href, onClick: (e) => navigate(e, href)}, gene);
};

// A link inside the app, as dcc.Link makes it: history.pushState and Dash's own event, so the
// page changes without reloading the app. The href is in the row's "<field>__href".
function navigate(event, href) {
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) { return; }
  event.preventDefault();
  window.history.pushState({}, "", href);
  window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
  window.scrollTo(0, 0);
}
dagcomponentfuncs.Link = function (props) {
  const href = props.data && props.data[props.colDef.field + "__href"];
  if (props.value == null) { return null; }
  if (!href) { return String(props.value); }
  return React.createElement("a", {href: href, onClick: (e) => navigate(e, href)},
                             String(props.value));
};
