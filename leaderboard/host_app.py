"""A leaderboard host's web process: pages, a JSON API and the submission endpoints (Starlette on uvicorn).

It never evaluates anything and never reads a catalog: it checks tokens, quotas and uploads, stores an accepted
file and queues it; the evaluation worker (`benchmark.host`), a separate process, takes the queue. What it
publishes is aggregate: per run, the headline metrics rounded to 2 decimals over at least `MIN_PUBLISHED`
organisms, never a per-organism answer, label or failure text.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from benchmark.wheels import BadWheel, check_wheel
from leaderboard.host_store import HostStore, QuotaExceeded
from leaderboard.store import StoreError
from leaderboard.tables import TRACK_COLUMNS

API_VERSION = 1
MIN_PUBLISHED = 5
"""Fewer organisms than this in a run and its scores are not published (a detector that knows ids could read
labels off them)."""
FILENAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.py$")


class Refused(ValueError):
    """An upload the host will not queue, in one line."""


@dataclass(frozen=True)
class HostLimits:
    upload_bytes: int = 1 << 20
    per_day: int = 3
    disk_bytes: int = 1 << 30


def check_upload(filename: str, data: bytes) -> None:
    """Raise `Refused` unless `data` is one Python file with a module's name, or a pure-Python wheel. Nothing is
    imported or run: the worker's sandbox checks the contract."""
    if filename.endswith(".whl"):
        try:
            check_wheel(filename, data)
        except BadWheel as e:
            raise Refused(str(e)) from None
        return
    if not FILENAME.fullmatch(filename):
        raise Refused(f"{filename!r} is not a detector's file name: a module's name ending in .py, or a wheel "
                      "(.whl; no sdist, since building one runs code), no directories")
    try:
        ast.parse(data.decode("utf-8"), filename)
    except (UnicodeDecodeError, SyntaxError, ValueError) as e:
        raise Refused(f"{filename} is not Python: {e.__class__.__name__}: {e}") from None


def public_runs(store: HostStore) -> list[dict]:
    """Each newest run's aggregate scores, rounded, where it judged enough organisms."""
    rows = []
    for record in store.latest_runs():
        if len(record.predictions) < MIN_PUBLISHED:
            continue
        track = record.track.value
        metrics = {m: _rounded(record.shown(m)) for m in TRACK_COLUMNS[track]}
        low, high = record.interval(next(iter(TRACK_COLUMNS[track])))
        rows.append({"detector": record.detector.name, "tier": record.detector.tier.value, "track": track,
                     "catalog": record.catalog.name, "split": record.catalog.split, "world": record.catalog.world,
                     **metrics, "ci_low": _rounded(low), "ci_high": _rounded(high),
                     "organisms": len(record.predictions), "date": record.started_at.date().isoformat()})
    return rows


def _rounded(value: float | str | None) -> float | str | None:
    return round(value, 2) if isinstance(value, float) else value


def make_app(store: HostStore, uploads: Path, limits: HostLimits, version: str, bundle: Path | None = None
             ) -> Starlette:
    """The host's ASGI app over its store and upload directory, serving the catalog's public `bundle` (for
    `dab pull`) where there is one."""

    def token_of(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return store.token_name(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status, headers=headers or None)

    def version_error(request: Request) -> JSONResponse | None:
        theirs = request.headers.get("x-dab-version", "")
        if theirs.split(".")[:2] != version.split(".")[:2]:
            return error(426, f"this host runs dab {version}; the client is dab {theirs or '(unknown)'}: install "
                              f"dab {'.'.join(version.split('.')[:2])}.x")
        return None

    async def about(request: Request) -> JSONResponse:
        return JSONResponse({"dab": version, "api": API_VERSION, "upload_bytes": limits.upload_bytes,
                             "per_day": limits.per_day})

    async def submit(request: Request) -> JSONResponse:
        token = await run_in_threadpool(token_of, request)
        if token is None:
            return error(401, "a valid API token is needed (Authorization: Bearer TOKEN)")
        if (refusal := version_error(request)) is not None:
            return refusal
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > limits.upload_bytes:
            return error(413, f"an upload is at most {limits.upload_bytes} bytes, with its Content-Length given")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.upload_bytes:
                return error(413, f"an upload is at most {limits.upload_bytes} bytes")
        filename = request.headers.get("x-filename", "")
        try:
            check_upload(filename, bytes(data))
        except Refused as e:
            return error(422, str(e))
        submission = uuid.uuid4().hex
        folder = uploads / submission
        try:
            folder.mkdir(parents=True)
            (folder / filename).write_bytes(data)
            await run_in_threadpool(store.enqueue, submission, token, filename, hashlib.sha256(data).hexdigest(),
                                    len(data), limits.per_day, limits.disk_bytes)
        except QuotaExceeded as e:
            shutil.rmtree(folder, ignore_errors=True)
            after = {"Retry-After": str(max(1, int((e.retry_after - datetime.now(UTC)).total_seconds())))} \
                if e.retry_after else {}
            return error(429, str(e), **after)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return JSONResponse({"id": submission, "state": "queued"}, 201)

    async def status(request: Request) -> JSONResponse:
        try:
            found = await run_in_threadpool(store.submission, request.path_params["id"])
        except StoreError as e:
            return error(404, str(e))
        return JSONResponse(found.public())

    async def cancel(request: Request) -> JSONResponse:
        token = await run_in_threadpool(token_of, request)
        if token is None:
            return error(401, "a valid API token is needed (Authorization: Bearer TOKEN)")
        try:
            found = await run_in_threadpool(store.cancel, request.path_params["id"], token)
        except StoreError as e:
            return error(404, str(e))
        return JSONResponse(found.public())

    async def public_bundle(request: Request) -> Response:
        if bundle is None or not bundle.is_file():
            return error(404, "this host publishes no bundle")
        return FileResponse(bundle, media_type="application/gzip", filename=bundle.name)

    async def leaderboard(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(public_runs, store))

    async def page(request: Request) -> HTMLResponse:
        runs, submissions = await run_in_threadpool(lambda: (public_runs(store), store.submissions()))
        return HTMLResponse(host_page(runs, [s.public() for s in submissions]))

    return Starlette(routes=[
        Route("/", page), Route("/api/version", about), Route("/api/leaderboard", leaderboard),
        Route("/api/bundle", public_bundle),
        Route("/api/submissions", submit, methods=["POST"]), Route("/api/submissions/{id}", status),
        Route("/api/submissions/{id}/cancel", cancel, methods=["POST"])])


def host_page(runs: list[dict], submissions: list[dict]) -> str:
    """The host's front page: published scores and the state of each submission."""
    def table(rows: list[dict], columns: list[str]) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(r.get(c, '') or ''))}</td>" for c in columns) + "</tr>"
                       for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"
    scores = table(runs, ["detector", "tier", "track", "split", "world", "auroc", "ci_low", "ci_high", "organisms"])
    queue = table(submissions, ["id", "state", "organisms_done", "organisms", "reason", "created_at"])
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>dab host</title></head><body>"
            f"<h1>dab leaderboard</h1>{scores}<h2>Submissions</h2>{queue}</body></html>")
