"""A catalog instance's public bundle: what a host gives out so that researchers can work on its `dev` split
without building it (`dab pull`).

It holds every `dev` organism's files, its manifest cut to `dev`, the `dev` entries of the answer key (`dev`'s
labels are public), the shortcut gate's `dev` rows, and `bundle.json`, which names every other file with its
sha256. It never holds the secret, a sealed split's organism or label. The archive is a tar.gz written the same
way every time, so that its own sha256, given out of band, names it. Installing trusts nothing in it: the
archive must match that hash, every file the manifest, every path must lie inside the catalog, and only JSON and
safetensors files are taken (no pickle, which runs code when loaded).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from model_organisms import sealed
from model_organisms.catalog import (
    MANIFEST,
    SPECS_DIR,
    Catalog,
    CatalogError,
    CatalogManifest,
    catalog_dir,
    load_spec,
    pulled_spec_path,
    spec_fingerprint,
    write_json,
)
from model_organisms.organism import sha256_file
from model_organisms.sealed import ANSWER_KEY

BUNDLE_MANIFEST = "bundle.json"
GATE = "shortcut_gate.json"
FORMAT = 1
ORGANISM_FILE = re.compile(r"^organisms/[0-9a-f]+/[A-Za-z0-9_.-]+\.(json|safetensors)$")
TOP_FILES = {MANIFEST, ANSWER_KEY, GATE}


class BundleError(CatalogError):
    """A bundle that is refused, in one line naming what is wrong and where."""


def _public_files(catalog: Catalog) -> dict[str, bytes]:
    dev = catalog.ids("dev")
    manifest = catalog.manifest.model_copy(update={"splits": {"dev": dev},
                                                   "worlds": {i: w for i, w in catalog.manifest.worlds.items()
                                                              if i in dev}})
    key = sealed.answer_key(catalog)
    files = {MANIFEST: manifest.model_dump_json(indent=2).encode(),
             ANSWER_KEY: json.dumps([key[i].model_dump(mode="json") for i in dev], indent=1).encode()}
    if (catalog.directory / GATE).is_file():
        gate = json.loads((catalog.directory / GATE).read_text())
        gate["rows"] = [r for r in gate["rows"] if r["split"] == "dev"]
        gate["untested"] = {k: v for k, v in gate["untested"].items() if k.split()[0] == "dev"}
        files[GATE] = json.dumps(gate, indent=1).encode()
    for oid in dev:
        for path in sorted(catalog.organism_dir(oid).iterdir()):
            files[f"organisms/{oid}/{path.name}"] = path.read_bytes()
    return files


def write_bundle(catalog: Catalog, path: Path, version: str) -> str:
    """Write the instance's public bundle to `path`; its sha256 (the same bytes for the same instance)."""
    files = _public_files(catalog)
    index = {"format": FORMAT, "dab": version, "catalog": catalog.name, "fingerprint": catalog.fingerprint,
             "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    files[BUNDLE_MANIFEST] = json.dumps(index, indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(files[name]), 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    os.replace(tmp, path)
    return sha256_file(path)


def _read(archive: Path) -> dict[str, bytes]:
    """Every file of the archive, refusing any member that is not a plain file at a path inside the catalog."""
    files = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name
                if not member.isfile():
                    raise BundleError(f"bundle member {name!r} is a link, directory or device, not a file")
                parts = PurePosixPath(name).parts
                if name.startswith(("/", "\\")) or ".." in parts or "\\" in name:
                    raise BundleError(f"bundle member {name!r} lies outside the catalog")
                data = tar.extractfile(member).read()
                if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
                    raise BundleError(f"bundle member {name!r} is a pickle (it would run code when loaded)")
                if name != BUNDLE_MANIFEST and name not in TOP_FILES and not ORGANISM_FILE.fullmatch(name):
                    raise BundleError(f"bundle member {name!r} is not a catalog file (only the manifest, answer key, "
                                      "gate report and organisms' .json and .safetensors files are taken)")
                if name in files:
                    raise BundleError(f"bundle member {name!r} appears twice")
                files[name] = data
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as e:
        raise BundleError(f"{archive}: not a readable tar.gz bundle ({e})") from None
    return files


def _checked(files: dict[str, bytes]) -> CatalogManifest:
    """The bundle's catalog manifest, once every file matches `bundle.json` and the manifest this dab's spec."""
    try:
        index = json.loads(files.pop(BUNDLE_MANIFEST))
        listed: dict[str, str] = index["files"]
        fmt = index["format"]
    except KeyError:
        raise BundleError(f"the bundle has no valid {BUNDLE_MANIFEST}") from None
    except (ValueError, TypeError) as e:
        raise BundleError(f"the bundle's {BUNDLE_MANIFEST} is not valid: {e}") from None
    if fmt != FORMAT:
        raise BundleError(f"the bundle is of format {fmt}; this dab reads format {FORMAT}")
    if extra := sorted(set(files) - set(listed)):
        raise BundleError(f"bundle file {extra[0]} is not in {BUNDLE_MANIFEST}")
    if missing := sorted(set(listed) - set(files)):
        raise BundleError(f"bundle file {missing[0]} named in {BUNDLE_MANIFEST} is missing")
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise BundleError(f"bundle file {name} does not match its sha256 in {BUNDLE_MANIFEST}")
    try:
        manifest = CatalogManifest.model_validate_json(files[MANIFEST])
    except Exception as e:  # pydantic's errors, or a spec this dab cannot read
        raise BundleError(f"the bundle's {MANIFEST} is not a catalog manifest: {str(e).splitlines()[0]}") from None
    if set(manifest.splits) != {"dev"}:
        raise BundleError(f"the bundle's {MANIFEST} lists splits {sorted(manifest.splits)}; a bundle holds dev alone")
    if manifest.name != manifest.spec.name:
        raise BundleError(f"the bundle's {MANIFEST} names catalog {manifest.name!r}, its spec {manifest.spec.name!r}")
    if {n.split("/")[1] for n in files if n.startswith("organisms/")} != set(manifest.splits["dev"]):
        raise BundleError(f"the bundle's organisms are not the dev organisms its {MANIFEST} lists")
    if spec_fingerprint(manifest.spec) != manifest.spec_fingerprint:
        raise BundleError(f"catalog {manifest.name}'s world or recipes differ in this dab from the host's (another "
                          f"version, dab {index.get('dab')}?): its public inputs would not match")
    return manifest


def install(archive: Path, sha256: str) -> Catalog:
    """Check the archive against `sha256` and every check above, then put its catalog in this cache. Nothing is
    written unless all pass."""
    if (found := sha256_file(archive)) != sha256.lower():
        raise BundleError(f"the bundle's sha256 is {found}, not the {sha256} you were given: refused")
    files = _read(archive)
    manifest = _checked(files)
    target = catalog_dir(manifest.spec)
    builtin = SPECS_DIR / f"{manifest.name}.toml"
    if builtin.is_file() and catalog_dir(load_spec(manifest.name)) != target:
        raise BundleError(f"the host's {manifest.name} is not this dab's built-in {manifest.name} (their specs "
                          f"differ): the host should name its catalog otherwise")
    if (target / MANIFEST).is_file():
        here = Catalog(target)
        if here.fingerprint == manifest.fingerprint and set(here.manifest.splits) == {"dev"}:
            return here
        raise BundleError(f"this cache already holds instance {here.fingerprint[:12]} of {manifest.name} at {target}: "
                          "move it away first (or pull into another cache with $DAB_CACHE_DIR)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=target.parent))
    try:
        for name, data in files.items():
            path = staging / (f"{sealed.SEALED}/{name}" if name == ANSWER_KEY else name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        sealed.make_sealed_dir(staging)
        if not builtin.is_file():
            write_json(pulled_spec_path(manifest.name), manifest.spec.model_dump(mode="json", exclude_none=True))
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Catalog(target)

