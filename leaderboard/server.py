"""`dab serve`: the static site and a small JSON API, on localhost only."""

from __future__ import annotations

import json
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from leaderboard.store import ResultStore, StoreError
from leaderboard.tables import leaderboard_rows


class _Handler(SimpleHTTPRequestHandler):
    store: ResultStore

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path == "/api/leaderboard":
            return self._json(200, leaderboard_rows(self.store.latest_runs()))
        if self.path.startswith("/api/runs/"):
            try:
                return self._json(200, json.loads(self.store.get(self.path.removeprefix("/api/runs/")).model_dump_json()))
            except StoreError as e:
                return self._json(404, {"error": str(e)})
        return super().do_GET()

    def _json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by default
        pass


def make_server(site: Path, store: ResultStore, port: int = 8000) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"store": store})
    return ThreadingHTTPServer(("127.0.0.1", port), partial(handler, directory=str(site)))
