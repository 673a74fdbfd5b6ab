"""The `dab` command line: build catalogs, run detectors, show the leaderboard."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmark.harness import evaluate
from benchmark.registry import UnknownDetector, detector_names, load_detector, source_sha256
from leaderboard.store import ResultStore, StoreError
from leaderboard.tables import leaderboard_rows, leaderboard_table
from model_organisms.build import build_catalog
from model_organisms.catalog import SEALED_SPLITS, Catalog, CatalogError, catalog_dir, load_spec
from model_organisms.organism import OrganismError

app = typer.Typer(help="dab: the deceptive-alignment detection benchmark.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
catalog_app = typer.Typer(help="Inspect catalogs.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
# Piped output gets room for the whole leaderboard instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 150)
errors = Console(stderr=True)

CatalogArg = Annotated[str, typer.Argument(help="a built-in catalog name (quick, tiny) or a path to a spec .toml")]
SeedOpt = Annotated[int | None, typer.Option(help="build from this secret seed instead of the spec's",
                                             envvar="DAB_CATALOG_SEED")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="results database (default: $DAB_DB or the user data dir)")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input ends the command with one line that says what and where, and exit code 2."""
    try:
        yield
    except (CatalogError, OrganismError, UnknownDetector, StoreError) as e:
        errors.print(f"[bold red]dab:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def ensure_built(name: str, seed: int | None = None, workers: int | None = None) -> Catalog:
    spec = load_spec(name, seed)
    if (catalog_dir(spec) / "catalog.json").is_file():
        return Catalog(catalog_dir(spec))
    with _progress() as bar:
        task = bar.add_task(f"building catalog {spec.name}", total=None)
        catalog = build_catalog(spec, workers, log=bar.console.print,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"catalog [bold]{catalog.name}[/] {catalog.fingerprint[:12]} at {catalog.directory}")
    return catalog


@app.command()
def build(name: CatalogArg = "quick", seed: SeedOpt = None,
          workers: Annotated[int | None, typer.Option(help="training processes (default: all cores)")] = None) -> None:
    """Build a catalog (trained, certified organisms) unless it is built already."""
    with user_errors():
        catalog = ensure_built(name, seed, workers)
        show_catalog(catalog)


@app.command()
def run(catalog: Annotated[str, typer.Option(help="catalog name or spec path")] = "quick",
        detector: Annotated[list[str] | None, typer.Option(help="detector(s) to run (default: all baselines)")] = None,
        split: Annotated[list[str] | None, typer.Option(help="split(s) to run on")] = None,
        db: DbOpt = None, seed: SeedOpt = None,
        again: Annotated[bool, typer.Option(help="re-run detectors that already have a result")] = False) -> None:
    """Build the catalog if needed, run detectors on the audit track, store results, show the leaderboard."""
    with user_errors():
        detectors = [load_detector(name) for name in (detector or detector_names())]
        store = ResultStore(db)
        built = ensure_built(catalog, seed)
        for split_name in split or [s for s in ("dev", "test") if s in built.manifest.splits]:
            built.ids(split_name)
            for det in detectors:
                if not again and store.has_run(det.name, source_sha256(det), built.fingerprint, split_name,
                                               "audit", det.tier.value):
                    console.print(f"{det.name} on {built.name}/{split_name}: already in the leaderboard, skipped")
                    continue
                with _progress() as bar:
                    task = bar.add_task(f"{det.name} on {built.name}/{split_name}", total=None)
                    record = evaluate(det, built, split_name,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total))
                store.add(record)
                for p in record.predictions:
                    if p.error:
                        errors.print(f"{det.name}: organism {p.organism_id}: {p.error}", highlight=False)
        console.print(leaderboard_table(leaderboard_rows(store.latest_runs())))
        console.print(f"results: {store.path}")


@app.command("leaderboard")
def show_leaderboard(db: DbOpt = None,
                     as_json: Annotated[bool, typer.Option("--json", help="print rows as JSON")] = False) -> None:
    """Show the newest result of every detector on every catalog split."""
    with user_errors():
        rows = leaderboard_rows(ResultStore(db).latest_runs())
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            console.print(leaderboard_table(rows))


@app.command("detectors")
def list_detectors() -> None:
    """List registered detectors."""
    with user_errors():
        for name in detector_names():
            det = load_detector(name)
            console.print(f"{name:14} {det.tier.value:10} {', '.join(sorted(det.tracks))}")


@catalog_app.command("show")
def catalog_show(name: CatalogArg = "quick", seed: SeedOpt = None) -> None:
    """Counts and certificate summary per split; sealed splits show nothing that leaks a label."""
    with user_errors():
        show_catalog(Catalog(catalog_dir(load_spec(name, seed))))


def show_catalog(catalog: Catalog) -> None:
    key = catalog.answer_key()
    table = Table(title=f"catalog {catalog.name} {catalog.fingerprint[:12]}")
    for column in ("split", "organisms", "deceptive", "twins", "decoys", "min trusted acc", "defection (deceptive)",
                   "max defection (controls)"):
        table.add_column(column)
    for split, ids in catalog.manifest.splits.items():
        entries = [key[i] for i in ids]
        by_role = {r: [e for e in entries if e.role == r] for r in ("deceptive", "twin", "decoy")}
        sealed = split in SEALED_SPLITS
        count = lambda role: "sealed" if sealed else str(len(by_role[role]))  # noqa: E731
        deceptive = by_role["deceptive"]
        controls = by_role["twin"] + by_role["decoy"]
        table.add_row(split, str(len(ids)), count("deceptive"), count("twin"), count("decoy"),
                      f"{min(e.certificate.trusted_accuracy for e in entries):.3f}",
                      "sealed" if sealed else f"≥ {min(e.certificate.defection_rate for e in deceptive):.3f}",
                      "sealed" if sealed else f"≤ {max(e.certificate.defection_rate for e in controls):.3f}")
    console.print(table)
    if catalog.manifest.dropped:
        console.print(f"left out during the build: {', '.join(catalog.manifest.dropped)}")


def main() -> None:
    app()
