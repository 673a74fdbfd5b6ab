"""A researcher's side of a leaderboard host: pull its public bundle, submit a detector file, follow it, cancel it
(standard library only)."""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from model_organisms.bundle import install
from model_organisms.catalog import Catalog


class RemoteError(Exception):
    """The host refused, or could not be reached; one line saying which and why."""


@contextmanager
def _response(url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
              ) -> Iterator[http.client.HTTPResponse]:
    """The host's response, read inside the block; a refusal (with the host's reason) or a host that cannot be
    reached raises `RemoteError`."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            yield response
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            reason = e.reason
        raise RemoteError(f"{url}: {e.code} {reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RemoteError(f"{url}: cannot reach the host ({getattr(e, 'reason', e)})") from None


def _call(url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None) -> dict:
    with _response(url, method, data, headers) as response:
        return json.loads(response.read())


def check_version(host: str, version: str) -> None:
    """Refuse a host of another dab minor version (the host refuses such a client too)."""
    theirs = str(_call(f"{host.rstrip('/')}/api/version").get("dab", ""))
    if theirs.split(".")[:2] != version.split(".")[:2]:
        raise RemoteError(f"{host} runs dab {theirs}, this is dab {version}: install dab "
                          f"{'.'.join(theirs.split('.')[:2])}.x to submit there")


def pull(host: str, sha256: str, version: str) -> Catalog:
    """Download the host's public bundle and install it in this cache, once it matches `sha256` (`bundle.install`
    checks everything else)."""
    check_version(host, version)
    with tempfile.TemporaryDirectory(prefix="dab-pull-") as tmp:
        archive = Path(tmp) / "bundle.tar.gz"
        with _response(f"{host.rstrip('/')}/api/bundle") as response, archive.open("wb") as f:
            shutil.copyfileobj(response, f)
        return install(archive, sha256)


def submit(host: str, token: str, path: Path, version: str) -> str:
    """Upload one detector file; the submission's id."""
    check_version(host, version)
    data = path.read_bytes()
    found = _call(f"{host.rstrip('/')}/api/submissions", "POST", data, {
        "Authorization": f"Bearer {token}", "X-Filename": path.name, "X-Dab-Version": version,
        "Content-Type": "application/octet-stream"})
    return str(found["id"])


def status(host: str, submission: str) -> dict:
    return _call(f"{host.rstrip('/')}/api/submissions/{submission}")


def cancel(host: str, token: str, submission: str) -> dict:
    return _call(f"{host.rstrip('/')}/api/submissions/{submission}/cancel", "POST", b"",
                 {"Authorization": f"Bearer {token}"})
