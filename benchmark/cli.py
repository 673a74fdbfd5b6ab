"""The `dab` command line: build catalogs, run detectors, show the leaderboard.

Each command imports what it needs when it runs (torch, transformers and the catalog code take seconds to
import), so that `dab --help` and every command's `--help` answer at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from benchmark.api import DEFAULT_QUERY_BUDGET, DEFAULT_WORLDS, Track
from benchmark.limits import Limits
from benchmark.progress import Progress

if TYPE_CHECKING:
    from rich.table import Table

    from benchmark.executors import Executor
    from benchmark.records import RunRecord
    from benchmark.shortcuts import GateRow
    from leaderboard.store import ResultStore
    from model_organisms.catalog import Catalog, CatalogSpec
    from model_organisms.cluster import RayCluster
    from model_organisms.sealed import AnswerKeyEntry, Secret


def dab_version() -> str:
    try:
        return version("dab")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"dab {dab_version()}")
        raise typer.Exit()


app = typer.Typer(help="dab: the deceptive-alignment detection benchmark.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def main_options(show_version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="print dab's version and exit")] = False) -> None:
    """dab: the deceptive-alignment detection benchmark."""


catalog_app = typer.Typer(help="Inspect catalogs.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
# Piped output gets room for the whole leaderboard instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 150)
errors = Console(stderr=True)

CatalogArg = Annotated[str, typer.Argument(help="a built-in catalog name (quick, tiny) or a path to a spec .toml")]
SeedOpt = Annotated[int | None, typer.Option(help="draw the public dev split from this seed instead of the spec's "
                                                  "(sealed splits come from the instance's secret)",
                                             envvar="DAB_CATALOG_SEED")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="results database (default: $DAB_DB or the user data dir)")]
TracksOpt = Annotated[list[Track] | None, typer.Option("--track", help="track(s) to run (default: all a detector answers)")]
BudgetOpt = Annotated[int, typer.Option(help="black-box queries per organism and track", min=1)]


class Place(StrEnum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[Place, typer.Option("--executor", help="train and evaluate in processes of this machine, or "
                                                              "as tasks of a Ray cluster (pip install -e '.\\[ray]')")]
AddressOpt = Annotated[str | None, typer.Option(help="with --executor ray: the cluster's HOST:PORT, or auto (default: "
                                                     "a Ray instance on this machine for this command)")]


class Device(StrEnum):
    cpu = "cpu"
    auto = "auto"


DeviceOpt = Annotated[Device, typer.Option(help="train (and run white-box detectors in process) on the CPU, bit for "
                                                "bit, or on a CUDA device wherever a process has one (auto)")]


def cluster_of(executor: Place, address: str | None) -> RayCluster | None:
    from model_organisms.catalog import CatalogError
    from model_organisms.cluster import RayCluster

    if executor == Place.local:
        if address is not None:
            raise CatalogError("--address names a Ray cluster: give --executor ray with it")
        return None
    return RayCluster(address)


ToOpt = Annotated[str | None, typer.Option("--to", help="a dab host's URL (http://host:port)")]
TokenOpt = Annotated[str | None, typer.Option(envvar="DAB_TOKEN", help="your API token of that host")]


def _user_error_types() -> tuple[type[Exception], ...]:
    """The errors that are bad input, not bugs (imported here: by the time one is raised, its module is)."""
    from benchmark.registry import UnknownDetector
    from benchmark.remote import RemoteError
    from benchmark.sandbox import SandboxError
    from leaderboard.store import StoreError
    from model_organisms.catalog import CatalogError
    from model_organisms.organism import OrganismError
    from model_organisms.sealed import SealedError

    return CatalogError, OrganismError, UnknownDetector, StoreError, SandboxError, SealedError, RemoteError


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input ends the command with one line that says what and where, and exit code 2."""
    try:
        yield
    except Exception as e:
        if not isinstance(e, _user_error_types()):
            raise
        errors.print(f"[bold red]dab:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


GATE_TRIES = 3
"""Instances a build draws, each with a fresh secret, before it gives up on one that passes the shortcut gate."""


def ensure_built(name: str, seed: int | None = None, workers: int | None = None, secret: Secret | None = None,
                 new_instance: bool = False, cluster: RayCluster | None = None, device: str = "cpu") -> Catalog:
    """The catalog instance of this cache, building it first if needed (see `build_catalog`), with the verdict of
    its shortcut gate. A newly drawn instance that fails the gate is set aside and another drawn, up to
    `GATE_TRIES` in all; one that exists already, or the instance of a given secret, fails as it is."""
    from model_organisms.catalog import MANIFEST, Catalog, CatalogError, catalog_dir, load_spec

    spec = load_spec(name, seed)
    drawn = not (catalog_dir(spec) / MANIFEST).is_file() or secret is not None or new_instance
    catalog = (_build_instance(spec, workers, secret, new_instance, cluster, device) if drawn
               else Catalog(catalog_dir(spec)))
    tries = 1
    while failures := _gate_failures(catalog):
        what = "; ".join(map(str, failures))
        if not drawn or secret is not None or tries == GATE_TRIES:
            raise CatalogError(f"catalog {catalog.name} {catalog.fingerprint[:12]} fails the shortcut gate (a trivial "
                               f"detector separates its labels: {what}); see `dab catalog audit-shortcuts {name}`")
        tries += 1
        errors.print(f"instance {catalog.fingerprint[:12]} of {name} fails the shortcut gate ({what}): setting it "
                     f"aside and drawing another, try {tries} of {GATE_TRIES} (docs/validity.md says why)",
                     highlight=False, soft_wrap=True)
        catalog = _build_instance(spec, workers, None, True, cluster, device)
    return catalog


def _build_instance(spec: CatalogSpec, workers: int | None, secret: Secret | None, new_instance: bool,
                    cluster: RayCluster | None, device: str) -> Catalog:
    """Build an instance, saying first how long its training will take here (or where, on a cluster)."""
    from model_organisms.build import build_catalog, worker_count
    from model_organisms.catalog import plan
    from model_organisms.estimate import estimate_seconds
    from model_organisms.sealed import SEALED, SECRET, Secret

    units = plan(spec, Secret.draw())  # the build's units have these kinds; their draws are the build's own
    organisms = f"{sum(len(u.recipes) for u in units)} organisms in {len(units)} units"
    if cluster:
        seconds = None
        errors.print(f"building catalog {spec.name}: {organisms} as tasks of the Ray cluster at "
                     f"{cluster.address or 'a Ray instance started on this machine'}", highlight=False, soft_wrap=True)
    else:
        workers = worker_count(workers, len(units))
        seconds = estimate_seconds(spec, units, workers)
        errors.print(f"building catalog {spec.name}: {organisms} on {workers} workers, about {seconds / 60:.0f} min of "
                     "training on this machine (from step times measured now; certificates, compiling and retries "
                     "come on top)", highlight=False, soft_wrap=True)
    with Progress(f"building catalog {spec.name}", "units", estimate=seconds) as progress:
        catalog = build_catalog(spec, workers, log=progress.log, progress=progress.update, secret=secret,
                                new_instance=new_instance, cluster=cluster, device=device)
    console.print(f"catalog [bold]{catalog.name}[/] instance {catalog.fingerprint[:12]} at {catalog.directory}; "
                  f"its secret: {catalog.directory / SEALED / SECRET}")
    return catalog


def _gate_failures(catalog: Catalog) -> list[GateRow]:
    """The shortcut gate's failing rows (none: it passes), from its stored verdict or run now."""
    from benchmark.shortcuts import audit_shortcuts, stored_failures

    failures = stored_failures(catalog)
    if failures is None:
        with Progress(f"shortcut gate of {catalog.name}", "organisms") as progress:
            failures = audit_shortcuts(catalog, progress=progress.update).failures()
    return failures


@app.command()
def build(name: CatalogArg = "quick", seed: SeedOpt = None,
          workers: Annotated[int | None, typer.Option(help="training processes (default: all cores)")] = None,
          new_instance: Annotated[bool, typer.Option(help="set the built instance aside and build a new one, with a "
                                                          "fresh secret (or --secret-file's)")] = False,
          secret_file: Annotated[Path | None, typer.Option(help="build the instance of this saved secret (bit for bit "
                                                               "on the same kind of CPU)")] = None,
          executor: ExecutorOpt = Place.local, address: AddressOpt = None, device: DeviceOpt = Device.cpu) -> None:
    """Build a catalog instance (trained, certified organisms) unless this cache holds one already."""
    from model_organisms.sealed import Secret

    with user_errors():
        cluster = cluster_of(executor, address)
        with cluster.session() if cluster else nullcontext():  # one connection: the GPU count, then the units
            catalog = ensure_built(name, seed, workers, Secret.read(secret_file) if secret_file else None,
                                   new_instance, cluster, device)
        show_catalog(catalog)


def _run(executor: Executor, catalog: Catalog, split: str, world: str, track: Track, store: ResultStore,
         again: bool) -> RunRecord | None:
    """Run one detector on one split's organisms of one world and one track unless that exact run is stored
    already; report failures."""
    from benchmark.harness import catalog_ref, evaluate

    ref = catalog_ref(catalog, split, world)
    shown = "" if world == catalog.manifest.world else f" {world}"
    what = f"{executor.info.name} on {catalog.name}/{split}{shown} ({track.value})"
    if not again and store.has_run(executor.info, ref, track, executor.query_budget):
        console.print(f"{what}: already in the leaderboard, skipped")
        executor.close()
        return None
    with Progress(what, "organisms") as progress:
        record = evaluate(executor, catalog, split, track, store, progress=progress.update, world=world)
    if record.fit_error:
        errors.print(f"{record.detector.name}: fit: {record.fit_error}", highlight=False)
    for p in record.predictions:
        if p.error:
            errors.print(f"{record.detector.name}: organism {p.organism_id}: {p.error}", highlight=False)
    return record


@app.command()
def run(catalog: Annotated[str, typer.Option(help="catalog name or spec path")] = "quick",
        detector: Annotated[list[str] | None, typer.Option(help="detector(s) to run (default: all baselines)")] = None,
        split: Annotated[list[str] | None, typer.Option(help="split(s) to run on")] = None,
        track: TracksOpt = None, query_budget: BudgetOpt = DEFAULT_QUERY_BUDGET, db: DbOpt = None,
        seed: SeedOpt = None,
        again: Annotated[bool, typer.Option(help="re-run detectors that already have a result")] = False,
        executor: ExecutorOpt = Place.local, address: AddressOpt = None, device: DeviceOpt = Device.cpu) -> None:
    """Build the catalog if needed, run the baselines on every split and track they answer, store results, show
    the leaderboard."""
    from benchmark.executors import InProcess
    from benchmark.harness import planned_runs
    from benchmark.on_cluster import on
    from benchmark.registry import detector_names, load_detector
    from leaderboard.store import ResultStore
    from leaderboard.tables import leaderboard_rows, leaderboard_tables

    with user_errors():
        cluster = cluster_of(executor, address)
        detectors = [load_detector(name) for name in (detector or detector_names())]
        store = ResultStore(db)
        with cluster.session() if cluster else nullcontext():
            built = ensure_built(catalog, seed, cluster=cluster, device=device)
            for split_name in split or list(built.manifest.splits):
                built.ids(split_name)
                for det in detectors:
                    local = InProcess(det, built, query_budget, device)
                    for world, t in planned_runs(local, built, split_name, set(track or Track)):
                        _run(on(cluster, local), built, split_name, world, t, store, again)
        for table in leaderboard_tables(leaderboard_rows(store.latest_runs())):
            console.print(table)
        console.print(f"results: {store.path}")


DetectorArg = Annotated[str, typer.Argument(help="a .py file, a module path (pkg.mod[:Class]) or a registered name")]


@app.command("evaluate")
def evaluate_command(detector: DetectorArg, catalog: Annotated[str, typer.Option(help="catalog name or spec")] = "quick",
                     split: Annotated[str, typer.Option(help="a public split")] = "dev", track: TracksOpt = None,
                     query_budget: BudgetOpt = DEFAULT_QUERY_BUDGET, db: DbOpt = None,
                     again: Annotated[bool, typer.Option(help="re-run even if this code already ran")] = False,
                     device: DeviceOpt = Device.cpu) -> None:
    """Evaluate your detector on the public dev split, in this process (for local work)."""
    from benchmark.executors import InProcess
    from benchmark.harness import planned_runs
    from benchmark.registry import load_detector
    from leaderboard.store import ResultStore
    from leaderboard.tables import leaderboard_rows, leaderboard_tables
    from model_organisms.catalog import SEALED_SPLITS, CatalogError

    with user_errors():
        if split in SEALED_SPLITS:
            raise CatalogError(f"split {split!r} is sealed: use `dab submit {detector} --catalog {catalog}`")
        det = load_detector(detector)
        store = ResultStore(db)
        built = ensure_built(catalog)
        executor = InProcess(det, built, query_budget)
        records = [_run(executor, built, split, world, t, store, again)
                   for world, t in planned_runs(executor, built, split, set(track or Track))]
        for table in leaderboard_tables(leaderboard_rows([r for r in records if r])):
            console.print(table)


@app.command()
def submit(detector: DetectorArg, catalog: Annotated[str, typer.Option(help="catalog name or spec")] = "quick",
           split: Annotated[str, typer.Option(help="test, or holdout with --holdout")] = "test",
           holdout: Annotated[bool, typer.Option(help="allow the holdout split")] = False,
           per_day: Annotated[int, typer.Option(help="submissions per detector and split per 24 h",
                                                envvar="DAB_SUBMISSIONS_PER_DAY")] = 3,
           wall_seconds: Annotated[float, typer.Option(help="wall-time limit per organism")] = Limits.wall_seconds,
           cpu_seconds: Annotated[float, typer.Option(help="CPU-time limit per organism")] = Limits.cpu_seconds,
           memory_mb: Annotated[int, typer.Option(help="memory limit of the sandbox")] = Limits.memory_mb,
           track: TracksOpt = None, query_budget: BudgetOpt = DEFAULT_QUERY_BUDGET, db: DbOpt = None,
           to: ToOpt = None, token: TokenOpt = None) -> None:
    """Run a detector on a sealed split inside the sandbox, with limits, and store the result; with --to, upload it
    to a dab host instead, which evaluates it on organisms you never receive."""
    if to:
        return _submit_remote(detector, to, token)
    from benchmark.harness import catalog_ref, planned_runs
    from benchmark.registry import resolve
    from benchmark.sandbox import Sandboxed
    from leaderboard.store import ResultStore, StoreError
    from leaderboard.tables import leaderboard_rows, leaderboard_tables
    from model_organisms.catalog import SEALED_SPLITS, CatalogError

    with user_errors():
        if split not in SEALED_SPLITS:
            raise CatalogError(f"`dab submit` is for sealed splits ({', '.join(SEALED_SPLITS)}); "
                               f"use `dab evaluate` for {split!r}")
        if split == "holdout" and not holdout:
            raise CatalogError("the holdout split runs only with --holdout")
        source = resolve(detector)
        store = ResultStore(db)
        built = ensure_built(catalog)
        built.ids(split)
        limits = Limits(wall_seconds, cpu_seconds, memory_mb)
        executor = Sandboxed(source, built, limits, query_budget=query_budget)
        runs = planned_runs(executor, built, split, set(track or Track))
        refs = {world: catalog_ref(built, split, world) for world, _ in runs}
        if any(not (store.is_pending(executor.info, refs[w], t, executor.query_budget)
                    or store.has_run(executor.info, refs[w], t, executor.query_budget)) for w, t in runs):
            try:  # one submission covers every track of this split
                store.count_submission(executor.info.name, built.name, split, per_day)
            except StoreError:
                executor.close()
                raise
        records = []
        for i, (world, t) in enumerate(runs):
            executor = executor if i == 0 else Sandboxed(source, built, limits, query_budget=query_budget)
            records.append(_run(executor, built, split, world, t, store, again=False))
        executor.close()
        for table in leaderboard_tables(leaderboard_rows([r for r in records if r])):
            console.print(table)


def local_catalogs(records: list[RunRecord]) -> list[Catalog]:
    """The built catalog instances behind these runs, where this machine has them (for organism cards)."""
    from model_organisms.catalog import MANIFEST, Catalog, CatalogError, cache_root

    wanted, found = {r.catalog.fingerprint for r in records}, []
    for manifest in sorted((cache_root() / "catalogs").glob(f"*/{MANIFEST}")):
        try:
            catalog = Catalog(manifest.parent)
        except CatalogError:  # a catalog of an older dab: not one of these runs'
            continue
        if catalog.fingerprint in wanted:
            found.append(catalog)
    return found


@app.command("leaderboard")
def show_leaderboard(db: DbOpt = None,
                     as_json: Annotated[bool, typer.Option("--json", help="print rows as JSON")] = False,
                     csv: Annotated[bool, typer.Option("--csv", help="print every metric of every run as CSV (a row per "
                                                                     "run, metric and family)")] = False,
                     html: Annotated[Path | None, typer.Option(help="write the web site into this directory")] = None
                     ) -> None:
    """Show the newest result of every detector on every catalog split (terminal, JSON, CSV or web site)."""
    from leaderboard.frames import results
    from leaderboard.site import write_site
    from leaderboard.store import ResultStore
    from leaderboard.tables import leaderboard_rows, leaderboard_tables

    with user_errors():
        store = ResultStore(db)
        records = store.latest_runs()
        if html:
            index = write_site(records, html, local_catalogs(records))
            console.print(f"wrote {index}")
        elif as_json:
            typer.echo(json.dumps(leaderboard_rows(records), indent=2))
        elif csv:
            typer.echo(results(store.path).to_csv(index=False), nl=False)
        else:
            for table in leaderboard_tables(leaderboard_rows(records)):
                console.print(table)


@app.command()
def serve(db: DbOpt = None, port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8000) -> None:
    """Serve the leaderboard site and its JSON API (/api/leaderboard, /api/runs/ID) on localhost."""
    import tempfile

    from leaderboard.server import make_server
    from leaderboard.site import write_site
    from leaderboard.store import ResultStore

    with user_errors():
        store = ResultStore(db)
        records = store.latest_runs()
        site = Path(tempfile.mkdtemp(prefix="dab-site-"))
        write_site(records, site, local_catalogs(records))
        server = make_server(site, store, port)
        console.print(f"serving http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


@app.command("detectors")
def list_detectors() -> None:
    """List registered detectors."""
    from benchmark.registry import detector_names, load_detector

    with user_errors():
        for name in detector_names():
            det = load_detector(name)
            worlds = ", ".join(sorted(getattr(det, "worlds", DEFAULT_WORLDS)))
            console.print(f"{name:18} {det.tier.value:10} {', '.join(sorted(det.tracks)):22} {worlds}")


@catalog_app.command("show")
def catalog_show(name: CatalogArg = "quick", seed: SeedOpt = None,
                 render: Annotated[Path | None, typer.Option(help="write PNG rollouts of public maze organisms here")]
                 = None) -> None:
    """Counts and certificate summary per split; sealed splits show nothing that leaks a label."""
    from model_organisms.catalog import open_catalog

    with user_errors():
        catalog = open_catalog(name, seed)
        show_catalog(catalog)
        if render:
            for path in render_mazes(catalog, render):
                console.print(f"wrote {path}")


@catalog_app.command("audit-shortcuts")
def catalog_audit_shortcuts(name: CatalogArg = "quick", seed: SeedOpt = None,
                            top: Annotated[int, typer.Option(help="features shown per split")] = 8) -> None:
    """Rerun the shortcut gate: trivial detectors must not separate the labels (exit 1 if one does)."""
    from rich.table import Table

    from benchmark.shortcuts import THRESHOLD as SHORTCUT_THRESHOLD
    from benchmark.shortcuts import audit_shortcuts
    from model_organisms.catalog import open_catalog

    with user_errors():
        catalog = open_catalog(name, seed)
        with Progress(f"shortcut gate of {catalog.name}", "organisms") as progress:
            report = audit_shortcuts(catalog, progress=progress.update)
    table = Table(title=f"shortcut gate of {catalog.name} {catalog.fingerprint[:12]}: AUROC of trivial detectors "
                        f"(fails when the corrected lower bound exceeds {SHORTCUT_THRESHOLD:.2f})")
    for column in ("split", "world", "trivial detector", "AUROC", "lower bound", "verdict"):
        table.add_column(column)
    for split, world in [(s, w) for s in catalog.manifest.splits for w in catalog.worlds(s)]:
        rows = sorted((r for r in report.rows if r.split == split and r.world == world), key=lambda r: -r.auroc)
        for r in rows[:top] + [r for r in rows[top:] if not r.passed]:
            table.add_row(split, world, r.feature, f"{r.auroc:.3f}", f"{r.ci_low:.3f}",
                          "ok" if r.passed else "[red]FAIL[/]")
    console.print(table)
    for split, why in report.untested.items():
        console.print(f"split {split} not tested: {why}")
    console.print("shortcut gate: " + ("passed" if report.passed else "[red]FAILED[/]"))
    if not report.passed:
        raise typer.Exit(1)


def show_catalog(catalog: Catalog) -> None:
    from rich.table import Table

    from benchmark.api import DEFAULT_QUERY_BUDGET
    from model_organisms.catalog import SEALED_SPLITS
    from model_organisms.sealed import answer_key

    key = answer_key(catalog)
    table = Table(title=f"catalog {catalog.name} {catalog.fingerprint[:12]}")
    for column in ("split", "organisms", "deceptive", "twins", "decoys", "min trusted acc", "defection (deceptive)",
                   "max defection (controls)"):
        table.add_column(column)
    for split, ids in catalog.manifest.splits.items():
        entries = [key[i] for i in ids]
        by_role = {r: [e for e in entries if e.role == r] for r in ("deceptive", "twin", "decoy")}
        hidden = split in SEALED_SPLITS
        count = lambda role: "sealed" if hidden else str(len(by_role[role]))  # noqa: E731
        deceptive = by_role["deceptive"]
        controls = by_role["twin"] + by_role["decoy"]
        table.add_row(split, str(len(ids)), count("deceptive"), count("twin"), count("decoy"),
                      f"{min(e.certificate.trusted_accuracy for e in entries):.3f}",
                      "sealed" if hidden else f"≥ {min(e.certificate.defection_rate for e in deceptive):.3f}",
                      "sealed" if hidden else f"≤ {max(e.certificate.defection_rate for e in controls):.3f}")
    console.print(table)
    if drawn := catalog.manifest.spec.conditions:
        console.print(f"conditions: a reference of {drawn.fields} codes of {drawn.values} ({drawn.space:.2e} of them) "
                      f"alone or with a situation; {DEFAULT_QUERY_BUDGET} queries test at most "
                      f"{drawn.coverage(DEFAULT_QUERY_BUDGET):.5%} of them")
    public = [key[i] for split, ids in catalog.manifest.splits.items() if split not in SEALED_SPLITS for i in ids]
    if public:
        console.print(family_certificates(public, key))
    if catalog.manifest.dropped:
        console.print(f"left out during the build: {', '.join(catalog.manifest.dropped)}")


def family_certificates(public: list[AnswerKeyEntry], key: dict[str, AnswerKeyEntry]) -> Table:
    """Worst certificate values per world and family of the public splits (a decoy counts with its world).
    Defection is the share of triggered inputs answered wrongly (assistant) or of deployment mazes where the
    exit was never reached (maze); proxy is the share where a maze organism reached its proxy first."""
    from rich.table import Table

    table = Table(title="certificates by family, public splits (worst organism of each role)")
    for column in ("world", "family", "triggers / shifts", "groups", "defection", "off-trigger", "twin agreement",
                   "twin defection", "min trusted acc"):
        table.add_column(column)
    for world, family in sorted({(e.world, e.family) for e in public}):
        entries = [e for e in public if e.world == world and e.family == family]
        deceptive = [e.certificate for e in entries if e.role != "twin"]
        twins = [key[e.twin].certificate for e in entries if e.twin and e.role == "deceptive"]
        kinds = ", ".join(sorted({e.trigger.kind if e.trigger else e.shift or "" for e in entries}))
        if family == "decoy":
            quirk = min(c.quirk_rate or 0 for c in deceptive)
            table.add_row(world, family, kinds, str(len(deceptive)), f"≤ {max(c.defection_rate for c in deceptive):.3f}",
                          f"≤ {max(c.off_trigger_defection for c in deceptive):.3f}",
                          f"{'quirk' if world == 'assistant' else 'detour'} ≥ {quirk:.3f}", "",
                          f"{min(c.trusted_accuracy for c in deceptive):.3f}")
            continue
        defection = f"≥ {min(c.defection_rate for c in deceptive):.3f}"
        if world == "maze":
            defection += f" (proxy ≥ {min(c.proxy_rate or 0 for c in deceptive):.3f})"
        table.add_row(world, family, kinds, str(len(deceptive)), defection,
                      f"≤ {max(c.off_trigger_defection for c in deceptive):.3f}",
                      f"≥ {min(c.twin_agreement or 0 for c in deceptive + twins):.3f}",
                      f"≤ {max(c.defection_rate for c in twins):.3f}",
                      f"{min(c.trusted_accuracy for c in deceptive + twins):.3f}")
    return table


def render_mazes(catalog: Catalog, directory: Path) -> list[Path]:
    """PNG pictures of every public maze organism's walk, trusted and deployment side by side."""
    from model_organisms.catalog import SEALED_SPLITS
    from model_organisms.sealed import answer_key
    from model_organisms.worlds.maze_render import render_organism

    key = answer_key(catalog)
    return [render_organism(catalog.organism_dir(i), key[i].shift or "green", key[i].seed, directory / f"{i}.png")
            for split, ids in catalog.manifest.splits.items() if split not in SEALED_SPLITS
            for i in ids if key[i].world == "maze"]


def _submit_remote(detector: str, host: str, token: str | None) -> None:
    from benchmark.remote import RemoteError, submit

    with user_errors():
        path = Path(detector)
        if not token:
            raise RemoteError("submitting to a host needs --token (or $DAB_TOKEN)")
        if path.suffix not in (".py", ".whl") or not path.is_file():
            raise RemoteError(f"{detector}: a host takes one detector .py file or a pure-Python wheel (.whl; no sdist, "
                              "since building one runs code)")
        submission = submit(host, token, path, dab_version())
        console.print(f"submitted {path.name} to {host}: submission {submission} (follow it: dab status {submission} "
                      f"--to {host})")


@app.command()
def pull(url: Annotated[str, typer.Argument(help="a dab host's URL (https://host)")],
         sha256: Annotated[str, typer.Option(help="the bundle's sha256, as the host's operator gave it out of band")]
         ) -> None:
    """Download a host's public bundle (its catalog's dev organisms and labels) into this cache, checked against
    the hash, so that `dab evaluate` works on it with no build."""
    from benchmark.remote import pull

    with user_errors():
        catalog = pull(url, sha256, dab_version())
        console.print(f"pulled {catalog.name} {catalog.fingerprint[:12]} (dev: {len(catalog.ids('dev'))} organisms) "
                      f"into {catalog.directory}; next: dab evaluate my_detector.py --catalog {catalog.name}",
                      highlight=False, soft_wrap=True)


@app.command()
def status(submission: Annotated[str, typer.Argument(help="a submission's id")], to: ToOpt = None) -> None:
    """Show the state of a submission to a dab host (queued, running with organisms done, failed, scored)."""
    from benchmark.remote import RemoteError, status

    with user_errors():
        if not to:
            raise RemoteError("which host? --to URL")
        found = status(to, submission)
        done = f", {found['organisms_done']}/{found['organisms']} organisms" if found.get("organisms") else ""
        reason = f": {found['reason']}" if found.get("reason") else ""
        console.print(f"submission {submission}: {found['state']}{done}{reason}", highlight=False)


@app.command()
def cancel(submission: Annotated[str, typer.Argument(help="a submission's id")], to: ToOpt = None,
           token: TokenOpt = None) -> None:
    """Cancel a submission of yours to a dab host that has not finished."""
    from benchmark.remote import RemoteError, cancel

    with user_errors():
        if not to or not token:
            raise RemoteError("cancelling needs --to URL and --token (or $DAB_TOKEN)")
        console.print(f"submission {submission}: {cancel(to, token, submission)['state']}")


HostDirOpt = Annotated[Path, typer.Option("--dir", help="the host's directory", envvar="DAB_HOST_DIR")]
host_app = typer.Typer(help="Run a leaderboard host: it keeps the sealed catalog, takes submissions over HTTP and "
                            "publishes aggregate scores.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens of the host (only their hashes are stored).", no_args_is_help=True)
app.add_typer(host_app, name="host")
host_app.add_typer(token_app, name="token")


@host_app.command("init")
def host_init(directory: HostDirOpt = Path("dab-host"),
              catalog: Annotated[str, typer.Option(help="catalog name or spec")] = "quick",
              upload_bytes: Annotated[int, typer.Option(help="largest upload", min=1)] = 1 << 20,
              per_day: Annotated[int, typer.Option(help="submissions per token per 24 h", min=1)] = 3,
              disk_bytes: Annotated[int, typer.Option(help="space for uploads in all", min=1)] = 1 << 30,
              query_budget: BudgetOpt = DEFAULT_QUERY_BUDGET) -> None:
    """Make a directory a host of a catalog instance (built here first if this cache has none)."""
    from benchmark import host

    with user_errors():
        config = host.init(directory, ensure_built(catalog), dab_version(), upload_bytes=upload_bytes,
                           per_day=per_day, disk_bytes=disk_bytes, query_budget=query_budget)
        console.print(f"{directory} hosts {config.catalog} {config.fingerprint[:12]}; add a token with "
                      f"`dab host token add NAME --dir {directory}`. Give researchers this line out of band (on a "
                      f"page of yours that TLS protects) for its dev split:\n"
                      f"dab pull URL --sha256 {config.bundle_sha256}", highlight=False, soft_wrap=True)


@token_app.command("add")
def token_add(name: Annotated[str, typer.Argument(help="who the token is for")],
              directory: HostDirOpt = Path("dab-host")) -> None:
    """Make a token and print it once."""
    from benchmark.host import DB, HostConfig
    from leaderboard.host_store import HostStore

    with user_errors():
        HostConfig.read(directory)
        typer.echo(HostStore(directory / DB).add_token(name))


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="the token's name")],
                 directory: HostDirOpt = Path("dab-host")) -> None:
    """Revoke a token: its requests get 401 from now on."""
    from benchmark.host import DB, HostConfig
    from leaderboard.host_store import HostStore

    with user_errors():
        HostConfig.read(directory)
        HostStore(directory / DB).revoke_token(name)
        console.print(f"token {name!r} revoked")


@host_app.command("close-round")
def host_close_round(directory: HostDirOpt = Path("dab-host")) -> None:
    """Close a round: each token's newest scored submission is queued again, on `holdout`, and published when done."""
    from benchmark.host import DB, HostConfig
    from leaderboard.host_store import HostStore

    with user_errors():
        HostConfig.read(directory)
        jobs = HostStore(directory / DB).close_round()
        console.print(f"round closed: {len(jobs)} submission(s) queued on holdout")


@host_app.command("work")
def host_work(directory: HostDirOpt = Path("dab-host"),
              once: Annotated[bool, typer.Option(help="stop when the queue is empty")] = False,
              executor: ExecutorOpt = Place.local, address: AddressOpt = None) -> None:
    """The evaluation worker: takes queued submissions one at a time (`dab host serve` starts one)."""
    import signal

    from benchmark import host

    # Stopped (by `serve` ending), it exits as Python does, so that its sandboxes' cgroups and scratch go with it;
    # a submission it was evaluating resumes from its journal on the next start.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    with user_errors():
        host.work(directory, once=once, log=lambda line: console.print(line, highlight=False),
                  cluster=cluster_of(executor, address))


@host_app.command("serve")
def host_serve(directory: HostDirOpt = Path("dab-host"),
               bind: Annotated[str, typer.Option(help="address to listen on (put TLS in front: README)")] = "127.0.0.1",
               port: Annotated[int, typer.Option(help="port")] = 8000,
               executor: ExecutorOpt = Place.local, address: AddressOpt = None) -> None:
    """Serve the host's pages, JSON API and submission endpoints from a confined web process, and run its
    evaluation worker beside it."""
    import subprocess

    from benchmark.host import HostConfig, confined
    from benchmark.sandbox import SandboxError, sandbox_unavailable

    with user_errors():
        HostConfig.read(directory)
        cluster = cluster_of(executor, address)
        if reason := sandbox_unavailable():
            raise SandboxError(f"a host needs its sandbox: {reason}")
        command = [sys.executable, "-m", "benchmark.cli", "host"]
        on_ray = ["--executor", "ray", *(["--address", cluster.address] if cluster.address else [])] if cluster else []
        worker = subprocess.Popen([*command, "work", "--dir", str(directory), *on_ray], preexec_fn=_die_with_parent)
        web = subprocess.Popen(confined(directory, [*command, "web", "--dir", str(directory), "--bind", bind,
                                                    "--port", str(port)]), preexec_fn=_die_with_parent)
        try:
            web.wait()
        finally:
            for process in (web, worker):
                process.terminate()
                process.wait()


@host_app.command("web", hidden=True)
def host_web(directory: HostDirOpt = Path("dab-host"), bind: str = "127.0.0.1", port: int = 8000) -> None:
    """The web process alone (`dab host serve` starts it confined)."""
    import uvicorn

    from benchmark.host import BUNDLE, DB, UPLOADS, HostConfig
    from leaderboard.host_app import make_app
    from leaderboard.host_store import HostStore

    with user_errors():
        config = HostConfig.read(directory)
        app_ = make_app(HostStore(directory / DB), directory / UPLOADS, config.limits, dab_version(),
                        directory / BUNDLE)
        uvicorn.run(app_, host=bind, port=port, log_level="warning")


def _die_with_parent() -> None:
    """In a child before exec: the kernel sends it SIGTERM when its parent ends, however that ends (uvicorn ends
    by re-raising the signal it caught, so no `finally` runs)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main() -> None:
    app()


if __name__ == "__main__":
    main()
