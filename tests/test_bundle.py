"""A host's public bundle and `dab pull`: a researcher gets the `dev` split, checked against a hash given out of
band, evaluates on it with no build, and nothing of a refused bundle reaches the cache."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app, dab_version
from benchmark.tracks import monitor_stream
from leaderboard.host_app import HostLimits, make_app
from leaderboard.host_store import HostStore
from model_organisms import build
from model_organisms.bundle import BUNDLE_MANIFEST, BundleError, install, write_bundle
from model_organisms.catalog import Catalog, open_catalog
from model_organisms.organism import sha256_file
from model_organisms.sealed import SEALED, SECRET, answer_key

runner = CliRunner()


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A researcher's empty cache, where nothing can be built."""
    cache = tmp_path / "researcher"
    monkeypatch.setenv("DAB_CACHE_DIR", str(cache))

    def no_build(*args, **kwargs):
        raise AssertionError("a pulled catalog was built")
    monkeypatch.setattr(build, "build_catalog", no_build)
    return cache


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_a_pulled_bundle_is_the_hosts_dev_split_and_evaluates_with_no_build(micro_catalog: Catalog, tmp_path: Path,
                                                                           fresh_cache: Path, serve) -> None:
    bundle = tmp_path / "host" / "bundle.tar.gz"
    sha = write_bundle(micro_catalog, bundle, dab_version())
    app_ = make_app(HostStore(tmp_path / "host" / "results.sqlite"), tmp_path / "host", HostLimits(), dab_version(),
                    bundle)
    with serve(app_) as url:
        refused = runner.invoke(app, ["pull", url, "--sha256", "0" * 64])
        assert refused.exit_code == 2 and "not the" in refused.output and not (fresh_cache / "catalogs").exists()
        pulled = runner.invoke(app, ["pull", url, "--sha256", sha])
        assert pulled.exit_code == 0, pulled.output
    catalog = open_catalog("micro")
    assert catalog.directory.is_relative_to(fresh_cache) and catalog.fingerprint == micro_catalog.fingerprint
    assert catalog.ids("dev") == micro_catalog.ids("dev") and not (catalog.directory / SEALED / SECRET).exists()
    assert answer_key(catalog) == answer_key(micro_catalog)
    for oid in catalog.ids("dev"):
        assert monitor_stream(catalog, oid) == monitor_stream(micro_catalog, oid)  # dev's streams need no secret
        for path in micro_catalog.organism_dir(oid).iterdir():
            assert (catalog.organism_dir(oid) / path.name).read_bytes() == path.read_bytes()
    result = runner.invoke(app, ["evaluate", "random", "--catalog", "micro", "--track", "audit",
                                 "--db", str(tmp_path / "results.sqlite")])
    assert result.exit_code == 0, result.output
    assert "random" in result.output


@pytest.mark.slow
def test_a_bundle_holds_no_sealed_organism_label_or_secret_and_is_the_same_bytes_each_time(tiny_catalog: Catalog,
                                                                                          tmp_path: Path) -> None:
    sha = write_bundle(tiny_catalog, tmp_path / "a.tar.gz", dab_version())
    assert write_bundle(tiny_catalog, tmp_path / "b.tar.gz", dab_version()) == sha
    files = members(tmp_path / "a.tar.gz")
    text = b"".join(files.values())
    sealed_ids = tiny_catalog.ids("test") + tiny_catalog.ids("holdout")
    assert sealed_ids and not any(oid.encode() in text for oid in sealed_ids)
    assert (tiny_catalog.directory / SEALED / SECRET).read_bytes().strip() not in text
    assert {n.split("/")[1] for n in files if n.startswith("organisms/")} == set(tiny_catalog.ids("dev"))


def tampered(archive: Path, out: Path, change) -> Path:
    """The bundle with `change(tar, files)` applied to its members (which it writes)."""
    files = members(archive)
    with tarfile.open(out, "w:gz") as tar:
        change(tar, files)
    return out


def add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), kind
    if kind == tarfile.SYMTYPE:
        info.size, info.linkname = 0, "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def keep(tar, files, skip=(), flip=None) -> None:
    for name, data in files.items():
        if name not in skip:
            add(tar, name, data[:-1] + bytes([data[-1] ^ 1]) if name == flip else data)


def renamed(tar, files) -> None:
    """The manifest names another catalog (a path, to write outside the cache), and `bundle.json` agrees."""
    manifest = json.loads(files["catalog.json"])
    manifest["name"] = "../../escape"
    files["catalog.json"] = json.dumps(manifest).encode()
    index = json.loads(files[BUNDLE_MANIFEST])
    index["files"]["catalog.json"] = hashlib.sha256(files["catalog.json"]).hexdigest()
    files[BUNDLE_MANIFEST] = json.dumps(index).encode()
    keep(tar, files)


PICKLE = pickle.dumps({"weights": [1, 2]}, protocol=4)
CHANGES = [  # what the refusal says, and the change
    ("lies outside the catalog", lambda tar, f: (keep(tar, f), add(tar, "../escape.json", b"{}"))),
    ("lies outside the catalog", lambda tar, f: (keep(tar, f), add(tar, "/tmp/absolute.json", b"{}"))),
    ("is a link", lambda tar, f: (keep(tar, f), add(tar, "organisms/abc/card.json", b"", tarfile.SYMTYPE))),
    ("is a pickle", lambda tar, f: (keep(tar, f), add(tar, "organisms/abc/model.json", PICKLE))),
    ("not a catalog file", lambda tar, f: (keep(tar, f), add(tar, "organisms/abc/model.pkl", b"weights"))),
    ("not in bundle.json", lambda tar, f: (keep(tar, f), add(tar, "organisms/abc/extra.json", b"{}"))),
    ("does not match its sha256", lambda tar, f: keep(tar, f, flip=next(n for n in f if n.endswith(".safetensors")))),
    ("is missing", lambda tar, f: keep(tar, f, skip={next(n for n in f if n.endswith(".safetensors"))})),
    ("no valid bundle.json", lambda tar, f: keep(tar, f, skip={BUNDLE_MANIFEST})),
    ("names catalog '../../escape'", renamed),
]


@pytest.mark.parametrize(("why", "change"), CHANGES, ids=[f"{i}-{why}" for i, (why, _) in enumerate(CHANGES)])
def test_a_bundle_that_is_not_what_it_claims_is_refused_in_one_line_and_nothing_is_kept(
        why: str, change, micro_catalog: Catalog, tmp_path: Path, fresh_cache: Path) -> None:
    good = tmp_path / "good.tar.gz"
    write_bundle(micro_catalog, good, dab_version())
    bad = tampered(good, tmp_path / "bad.tar.gz", change)
    with pytest.raises(BundleError) as refused:
        install(bad, sha256_file(bad))  # the hash given out of band is the tampered bundle's own
    assert why in str(refused.value) and "\n" not in str(refused.value)
    assert not (fresh_cache / "catalogs").exists()
