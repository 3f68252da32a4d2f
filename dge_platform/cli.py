"""The ``dge`` command: validate, add, run, status, sql, export and ui."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd

from dge_platform._core.problems import StudyInputError, format_problems
from dge_platform.storage.home import DgeHome, resolve_home

REPO_ROOT = Path(__file__).resolve().parents[1]


def _home(ctx: click.Context) -> DgeHome:
    return ctx.obj


@click.group()
@click.option("--home", type=click.Path(file_okay=False), envvar="DGE_HOME",
              help="Data root (default: $DGE_HOME, else the repository's data/).")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """dge-platform: differential expression studies as Dagster assets, queryable with SQL."""
    ctx.obj = resolve_home(home)
    try:
        _ = ctx.obj.warehouse  # a bad DGE_WAREHOUSE is reported here, not as a traceback later
    except ValueError as err:
        raise click.UsageError(str(err)) from None


@main.command()
@click.argument("study_dir", type=click.Path(path_type=Path))
def validate(study_dir: Path) -> None:
    """Check a study folder and print every problem at once (exit 1 if any)."""
    from dge_platform.validation import study_summary, validate_study

    report = validate_study(study_dir)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.problems:
        click.echo(format_problems(str(study_dir), report.problems), err=True)
        sys.exit(1)
    study = report.study
    size = (f"{study.counts.shape[1]} samples x {study.counts.shape[0]:,} genes"
            if study.counts is not None else f"{len(study.samples)} samples, counts to be "
            f"built from {study.plan.describe()} by 'dge run'")
    click.echo(f"OK: study '{study.config.id}' ({study.config.kind}): {size}, "
               f"{len(study.config.contrasts)} contrast(s), design {study.config.design}")
    for line in study_summary(study):
        click.echo(f"    {line}")


@main.command()
@click.argument("study_dir", type=click.Path(path_type=Path))
@click.option("--run", "run_after", is_flag=True, help="Materialize the study afterwards.")
@click.pass_context
def add(ctx: click.Context, study_dir: Path, run_after: bool) -> None:
    """Validate a study folder and register it under the data root (replacing that id)."""
    from dge_platform.registry import add_study

    home = _home(ctx).ensure()
    try:
        study = add_study(home, study_dir)
    except StudyInputError as err:
        click.echo(str(err), err=True)
        sys.exit(1)
    click.echo(f"registered '{study.config.id}' at {home.study_dir(study.config.id)}")
    if run_after:
        ctx.invoke(run, study_ids=(study.config.id,))


@main.command()
@click.argument("study_ids", nargs=-1)
@click.pass_context
def run(ctx: click.Context, study_ids: tuple[str, ...]) -> None:
    """Materialize every asset of the given studies (default: all registered studies); several
    studies run in batches (one run per batch of contiguous studies)."""
    from dge_platform._core.study_ids import is_valid_study_id
    from dge_platform.registry import study_folders
    from dge_platform.runner import instance_for, run_studies

    home = _home(ctx).ensure()
    registered = [p.name for p in study_folders(home)]
    if not study_ids:
        # A stray folder (not a study id) must not stop every other study's run.
        stray = [s for s in registered if not is_valid_study_id(s)]
        if stray:
            click.echo(f"warning: skipping folders under {home.studies} that are not study ids: "
                       f"{', '.join(map(repr, stray))}", err=True)
    ids = list(study_ids) or [s for s in registered if is_valid_study_id(s)]
    unknown = [s for s in ids if s not in registered or not is_valid_study_id(s)]
    if unknown:
        click.echo(f"error: no registered study {', '.join(map(repr, unknown))} under "
                   f"{home.studies}; register a study folder with 'dge add DIR'", err=True)
        sys.exit(1)
    if not ids:
        click.echo(f"no studies registered under {home.studies}; add one with 'dge add DIR'")
        return
    instance = instance_for(home)
    outcomes = run_studies(instance, ids, click.echo)
    click.echo("")
    for o in outcomes:
        status = "ok" if o.success else f"FAILED at step {o.failed_step}"
        click.echo(f"{', '.join(o.study_ids)}: {status} ({o.seconds:.1f} s, run {o.run_id[:8]})")
        if not o.success:
            click.echo(o.error or "no error message recorded", err=True)
    _print_summary(home, ids)
    if not all(o.success for o in outcomes):
        sys.exit(1)


def _print_summary(home: DgeHome, study_ids: list[str]) -> None:
    from dge_platform.storage.catalog import query
    from dge_platform.storage.warehouse import Warehouse
    from dge_platform.study.kinds import KINDS

    # Kind names are the platform's own constants, not user text.
    listed = ", ".join(f"'{kind}'" for kind, spec in KINDS.items() if spec.lists_contrasts)
    degs = query(home, "select d.study_id, d.contrast, coalesce(d.cell_type, '') as cell_type, "
                       "count(*) filter (where d.padj is not null) "
                       "as tested, count(*) filter (where d.significant and "
                       "d.log2_fold_change > 0) as up, count(*) filter (where d.significant and "
                       "d.log2_fold_change < 0) as down, any_value(s.alpha) as alpha "
                       "from deg_results d join studies s using (study_id) "
                       f"where s.kind in ({listed}) group by 1, 2, 3 order by 1, 2, 3")
    if len(degs):
        click.echo("\nDEGs per contrast (padj < study alpha):")
        click.echo(degs.to_string(index=False))
    if not _print_screens(home) and not len(degs):
        click.echo("\n(no DEG results yet)")
    reports = Warehouse(home.warehouse)
    for study_id in study_ids:
        path = reports.table_dir("reports") / f"study_id={study_id}" / "report.html"
        if path.exists():
            click.echo(f"Report {study_id}: {path}")
    click.echo(f"\nDuckDB catalog: {home.catalog}")
    click.echo('Query it:       dge sql "select * from deg_results where padj < 0.05 limit 10"')


def _print_screens(home: DgeHome) -> bool:
    """Per screen: conditions tested and active, the most active ones (screens have too many
    contrasts to list every one). False when there is no screen result."""
    from dge_platform.storage.catalog import query
    from dge_platform.storage.warehouse import Warehouse

    if not Warehouse(home.warehouse).has_data("compound_activity"):
        return False
    screens = query(home, "select study_id, count(*) as conditions, count(*) filter (where "
                          "active) as active, max(null_threshold) as null_threshold, "
                          "string_agg(contrast || ' (' || n_deg || ')', ', ' order by n_deg "
                          "desc) filter (where active) as most_active from compound_activity "
                          "group by 1 order by 1")
    if not len(screens):
        return False
    click.echo("\nScreens: compound x dose conditions active (DEGs above the control null):")
    for row in screens.itertuples():
        top = ", ".join((row.most_active or "").split(", ")[:5])
        click.echo(f"  {row.study_id}: {row.active} of {row.conditions} active (null 95th "
                   f"percentile {row.null_threshold:g} DEGs){': ' + top if top else ''}")
    if Warehouse(home.warehouse).has_data("combinations"):
        combos = query(home, "select study_id, count(*) as n, count(*) filter (where "
                             "nonadditive) as nonadditive, string_agg(combination || ' (' || "
                             "n_nonadditive || ')', ', ' order by n_nonadditive desc) filter "
                             "(where nonadditive) as most from combinations group by 1 "
                             "order by 1")
        if len(combos):
            click.echo("Combinations non-additive (genes with interaction padj < alpha above "
                       "the null):")
        for row in combos.itertuples():
            top = ", ".join((row.most or "").split(", ")[:5])
            click.echo(f"  {row.study_id}: {row.nonadditive} of {row.n}"
                       f"{': ' + top if top else ''}")
    return True


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """List registered studies: validity, and whether their outputs are up to date."""
    from dge_platform.defs.automation import current_code_versions
    from dge_platform.registry import fingerprint, study_folders
    from dge_platform.runner import instance_for, study_status
    from dge_platform.validation import validate_study

    home = _home(ctx).ensure()
    instance = instance_for(home)
    rows = []
    for folder in study_folders(home):
        report = validate_study(folder, expected_id=folder.name)
        kind = report.study.config.kind if report.study else None
        state = (f"invalid ({len(report.problems)} problem(s); run 'dge validate "
                 f"{folder}')" if report.problems
                 else study_status(instance, kind, folder.name, fingerprint(folder),
                                   current_code_versions(kind)))
        cfg = report.study.config if report.study else None
        rows.append({"study": folder.name, "kind": cfg.kind if cfg else "?",
                     "samples": len(report.study.samples) if cfg else None,
                     "contrasts": len(cfg.contrasts) if cfg else None, "status": state})
    if not rows:
        click.echo(f"no studies registered under {home.studies}")
        return
    click.echo(pd.DataFrame(rows).to_string(index=False))


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result to this file instead of the terminal.")
@click.pass_context
def sql(ctx: click.Context, sql: str, fmt: str, output: Path | None) -> None:
    """Run a read-only SQL query against the catalog."""
    from dge_platform.storage.catalog import CatalogQueryError, query

    try:
        result = query(_home(ctx), sql)
    except CatalogQueryError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    if fmt == "csv":
        text = result.to_csv(index=False)
    elif fmt == "json":
        text = result.to_json(orient="records", date_format="iso") + "\n"
    else:
        with pd.option_context("display.max_rows", 200, "display.width", 200):
            text = result.to_string(index=False) + "\n"
    if output:
        output.write_text(text)
        click.echo(f"wrote {len(result)} row(s) to {output}")
    else:
        click.echo(text, nl=False)


@main.command("export")
@click.argument("study_id")
@click.option("--contrast", help="Export only this contrast (default: every contrast).")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "parquet"]), required=True,
              help="xlsx: an 'about' sheet, then one sheet per contrast (single-cell: per "
                   "contrast x cell type); csv/parquet: one long table.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: <study>_deg_results[_<contrast>].<format> in the "
                   "current directory).")
@click.pass_context
def export(ctx: click.Context, study_id: str, contrast: str | None, fmt: str,
           output: Path | None) -> None:
    """Export a study's DEG results (deg_results) as biologists share them."""
    from dge_platform._core.study_ids import is_valid_study_id
    from dge_platform.outputs.export import build_export, default_output_name, write_export
    from dge_platform.registry import study_folders
    from dge_platform.storage.catalog import CatalogQueryError, query

    def fail(message: str) -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(1)

    home = _home(ctx)
    registered = [p.name for p in study_folders(home)]
    try:
        studies = query(home, "select * from studies order by study_id")
        known = studies[studies["study_id"] == study_id] if is_valid_study_id(study_id) \
            else studies.iloc[:0]
        if known.empty and study_id not in registered:
            listed = sorted(set(registered) | set(studies["study_id"]))
            fail(f"no study '{study_id}' under {home.root}; "
                 + (f"studies: {', '.join(listed)}" if listed
                    else "register a study folder with 'dge add DIR'"))
        # study_id matches the study id pattern here, so it is safe to quote.
        contrasts = query(home, "select distinct contrast from deg_results where study_id = "
                                f"'{study_id}' order by 1")["contrast"].tolist()
        if known.empty or not contrasts:
            fail(f"no DEG results yet for study '{study_id}'; run 'dge run {study_id}' first")
        if contrast is not None and contrast not in contrasts:
            shown = ", ".join(contrasts[:30]) + (f", ... ({len(contrasts)} in all)"
                                                 if len(contrasts) > 30 else "")
            fail(f"study '{study_id}' has no contrast '{contrast}'; available: {shown}")
        where = f"study_id = '{study_id}'"
        if contrast is not None:
            where += " and contrast = '" + contrast.replace("'", "''") + "'"
        results = query(home, f"select * from deg_results where {where}")
    except CatalogQueryError as err:
        fail(str(err))
    study = known.iloc[0].to_dict()
    path = output or Path.cwd() / default_output_name(study_id, fmt, contrast)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: folder {path.parent} does not exist")
    exported = build_export(results, study, contrast)
    write_export(exported, fmt, path)
    sheets = exported.sheets
    n_contrasts = len({s.contrast for s in sheets})
    cell_types = {s.cell_type for s in sheets if s.cell_type is not None}
    tested = f"{n_contrasts} contrast(s)" + (f" x {len(cell_types)} cell type(s)"
                                             if cell_types else "")
    layout = (f"'about' sheet + {len(sheets)} sheet(s) ({tested})" if fmt == "xlsx"
              else f"{tested} in one table")
    click.echo(f"wrote {path}")
    click.echo(f"{study_id}: {layout}; {len(exported.long):,} rows; "
               f"{exported.n_up + exported.n_down:,} DEGs at padj < {study['alpha']:g} "
               f"({exported.n_up:,} up, {exported.n_down:,} down)")


def _gene_list(text: str | None) -> list[str]:
    """Genes given as a comma/space separated list, or ``@file`` with one gene per line."""
    if not text:
        return []
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return [g for g in text.replace(",", " ").split() if g]


@main.command("signature-search")
@click.option("--up", "up_genes", help="Up-regulated query genes: 'A,B,C' or @file.")
@click.option("--down", "down_genes", help="Down-regulated query genes: 'A,B,C' or @file.")
@click.option("--study", "study_id", help="Use a catalog signature as the query: its study...")
@click.option("--contrast", help="...its contrast...")
@click.option("--cell-type", help="...and, for single-cell studies, its cell type.")
@click.option("--top", default=20, show_default=True, help="Rows to print.")
@click.option("--permutations", default=1000, show_default=True,
              help="Random gene sets per null distribution (p-values).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def signature_search(ctx: click.Context, up_genes: str | None, down_genes: str | None,
                     study_id: str | None, contrast: str | None, cell_type: str | None,
                     top: int, permutations: int, fmt: str) -> None:
    """Rank every contrast in the catalog by its connectivity to a gene signature (CMap-style
    KS score: positive = same direction, negative = reversed)."""
    from dge_platform.cross_study.signature_search import connectivity_scores, query_from_contrast
    from dge_platform.storage.catalog import query

    if bool(study_id) != bool(contrast) or (study_id and (up_genes or down_genes)):
        click.echo("error: give --up/--down genes, or --study and --contrast (not both)",
                   err=True)
        sys.exit(1)
    results = query(_home(ctx), "select study_id, contrast, cell_type, gene_id, gene_symbol, "
                                "stat, significant from deg_results")
    try:
        if study_id:
            up, down = query_from_contrast(results, study_id, contrast, cell_type)
        else:
            up, down = _gene_list(up_genes), _gene_list(down_genes)
            if not up and not down:
                raise ValueError("no query genes: give --up and/or --down")
        ranked = connectivity_scores(up, down, results, permutations=permutations)
    except (ValueError, OSError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    shown = ranked.head(top)
    if fmt == "csv":
        click.echo(shown.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(shown.to_json(orient="records"))
    else:
        click.echo(f"query: {len(up)} up, {len(down)} down genes; {len(ranked)} signatures")
        with pd.option_context("display.width", 200):
            click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


@main.command()
@click.option("--port", default=8050, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback by default: the explorer has no login).")
@click.pass_context
def explore(ctx: click.Context, port: int, host: str) -> None:
    """Explore results in the browser: studies, contrasts, genes across studies (read-only)."""
    from dge_platform.explorer.app import serve

    home = _home(ctx)
    if not home.catalog.exists():
        raise click.ClickException(f"no catalog at {home.catalog}: run 'dge run' first")
    click.echo(f"dge explore on http://{host}:{port} (data root {home.root}; Ctrl+C stops)")
    serve(home, host, port)


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.pass_context
def ui(ctx: click.Context, port: int) -> None:
    """Start the Dagster UI and daemon (sensor, schedule) on 127.0.0.1."""
    home = _home(ctx).ensure()
    env = {**os.environ, "DAGSTER_HOME": str(home.dagster_home), "DGE_HOME": str(home.root)}
    workspace = REPO_ROOT / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.exists() else ["-m", "dge_platform.definitions"]
    cmd = [sys.executable, "-m", "dagster", "dev", *target, "-h", "127.0.0.1", "-p", str(port)]
    click.echo(f"Dagster UI on http://127.0.0.1:{port} (data root {home.root})")
    sys.exit(subprocess.call(cmd, env=env, cwd=REPO_ROOT if workspace.exists() else None))
