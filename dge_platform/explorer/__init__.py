"""``dge explore``: a read-only web app over the catalog for biologists who do not write SQL.

Dash (plotly's React framework) with AG Grid: plotly figures are interactive out of the box
(WebGL scatter for 60,000-gene volcanoes), AG Grid's infinite row model pages, sorts and
filters server-side, and both ship their JavaScript in the Python packages, so the app works
with no network. Every query goes through :mod:`.data` (parameterized, read-only);
:mod:`.routes` maps shareable URLs to pages; :mod:`.app` wires them into a Dash app.
"""
