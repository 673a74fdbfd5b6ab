"""Detectors submitted to a host as pure-Python wheels: one that pip would install is taken, loads in the sandbox
and is scored; one that could run code outside it (compiled code, a .pth file, scripts) or escape the upload
folder is refused in one line, and nothing is stored."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from benchmark.cli import dab_version
from benchmark.host import DB, UPLOADS, init, work
from benchmark.sandbox import Sandboxed, sandbox_unavailable
from benchmark.wheels import unpack
from leaderboard.host_app import HostLimits, make_app
from leaderboard.host_store import HostStore
from model_organisms.catalog import Catalog

DETECTOR = b"""
from benchmark.api import AccessTier, Track
from coinpkg.helper import SCORE

class Coin:
    name = "wheelcoin"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.BLACK_BOX

    def audit(self, organism):
        return SCORE
"""
ENTRY = b"[dab.detectors]\nwheelcoin = coinpkg.detector:Coin\n"
WHEEL = b"Wheel-Version: 1.0\nGenerator: dab-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
NAME = "coinpkg-1.0-py3-none-any.whl"
needs_sandbox = pytest.mark.skipif(sandbox_unavailable() is not None, reason=f"{sandbox_unavailable()}")


def make_wheel(score: bytes = b"0.5", extra: dict[str, bytes] | None = None, entry: bytes = ENTRY,
               wheel: bytes = WHEEL, link: str | None = None) -> bytes:
    """A wheel as PEP 427 has it: the package, then `.dist-info` with its RECORD of every file's hash."""
    info = "coinpkg-1.0.dist-info"
    files = {"coinpkg/__init__.py": b"", "coinpkg/detector.py": DETECTOR, "coinpkg/helper.py": b"SCORE = " + score,
             f"{info}/METADATA": b"Metadata-Version: 2.1\nName: coinpkg\nVersion: 1.0\n",
             f"{info}/WHEEL": wheel, f"{info}/entry_points.txt": entry, **(extra or {})}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
                     f"{len(d)}\n" for n, d in files.items()) + f"{info}/RECORD,,\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in {**files, f"{info}/RECORD": record.encode()}.items():
            archive.writestr(zipfile.ZipInfo(name), data)  # a fixed date: the same bytes each call
        if link:
            symlink = zipfile.ZipInfo(link)
            symlink.external_attr = (0o120777 << 16)
            archive.writestr(symlink, "/etc/passwd")
    return out.getvalue()


def test_a_wheel_is_one_pip_installs(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(make_wheel())
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(tmp_path / "site"), str(tmp_path / NAME)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "coinpkg" / "helper.py").read_bytes() == b"SCORE = 0.5"


@needs_sandbox
def test_a_wheels_detector_loads_in_the_sandbox_and_its_hash_covers_every_module(micro_catalog: Catalog,
                                                                                 tmp_path: Path) -> None:
    hashes = []
    for score in (b"0.5", b"0.75"):  # the same detector.py, another helper
        (tmp_path / score.decode()).mkdir()
        wheel = tmp_path / score.decode() / NAME
        wheel.write_bytes(make_wheel(score))
        source = unpack(wheel, wheel.parent / "wheel")
        executor = Sandboxed(source, micro_catalog)
        assert executor.info.name == "wheelcoin"
        hashes.append(executor.info.source_sha256)
        executor.close()
    assert hashes[0] != hashes[1]


REFUSED = [  # (file name, wheel, what the refusal says)
    ("coinpkg-1.0-cp311-cp311-linux_x86_64.whl", make_wheel(), "not a pure-Python wheel"),
    ("coinpkg-1.0.tar.gz", make_wheel(), "no sdist"),
    (NAME, b"PK\x03\x04 not a zip", "not a readable wheel"),
    (NAME, make_wheel(extra={"coinpkg/_fast.cpython-311-x86_64-linux-gnu.so": b"\x7fELF"}), "not a Python file"),
    (NAME, make_wheel(extra={"coinpkg-startup.pth": b"import os; os.system('id')"}), "not a Python file"),
    (NAME, make_wheel(extra={"coinpkg-1.0.data/scripts/run.py": b"print(1)"}), "not a Python file"),
    (NAME, make_wheel(extra={"../escape.py": b""}), "lies outside"),
    (NAME, make_wheel(extra={"/tmp/absolute.py": b""}), "lies outside"),
    (NAME, make_wheel(link="coinpkg/key.py"), "is a link"),
    (NAME, make_wheel(extra={"coinpkg/broken.py": b"def broken(:\n"}), "is not Python"),
    (NAME, make_wheel(entry=b"[console_scripts]\ncoin = coinpkg.detector:main\n"), "exactly one detector"),
    (NAME, make_wheel(entry=ENTRY + b"other = coinpkg.detector:Coin\n"), "exactly one detector"),
    (NAME, make_wheel(wheel=WHEEL.replace(b"true", b"false")), "Root-Is-Purelib"),
]


def upload(url: str, token: str, filename: str, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/api/submissions", data=data, method="POST", headers={
        "Authorization": f"Bearer {token}", "X-Filename": filename, "X-Dab-Version": dab_version()})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_host_takes_a_pure_python_wheel_and_refuses_one_that_could_run_code_or_escape(tmp_path: Path,
                                                                                        serve) -> None:
    store, uploads = HostStore(tmp_path / "results.sqlite"), tmp_path / "uploads"
    uploads.mkdir()
    token = store.add_token("ada")
    with serve(make_app(store, uploads, HostLimits(per_day=99), dab_version())) as url:
        for filename, data, why in REFUSED:
            code, body = upload(url, token, filename, data)
            assert code == 422 and why in body and "\\n" not in body, (filename, why, body)
        assert (len(store.submissions()), list(uploads.iterdir())) == (0, [])
        code, body = upload(url, token, NAME, make_wheel())
        assert code == 201, body
    [submission] = store.submissions()
    assert (uploads / submission.source / NAME).read_bytes() == make_wheel()


@pytest.mark.slow
@needs_sandbox
def test_a_wheel_submitted_to_a_host_is_scored(tiny_catalog: Catalog, tmp_path: Path) -> None:
    directory = tmp_path / "host"
    init(directory, tiny_catalog, dab_version())
    (directory / UPLOADS / "w").mkdir()
    (directory / UPLOADS / "w" / NAME).write_bytes(make_wheel())
    store = HostStore(directory / DB)
    store.enqueue("w", "ada", NAME, "0" * 64, 1, 3, 1 << 30)
    work(directory, once=True, log=lambda line: None)
    assert store.submission("w").state == "scored"
    runs = [r for r in store.latest_runs() if r.detector.name == "wheelcoin"]
    assert runs and all(p.error is None and p.score == 0.5 for r in runs for p in r.predictions)
