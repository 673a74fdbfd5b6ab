"""Detectors submitted as pure-Python wheels: checked without running any of their code, then unpacked.

A wheel is a zip archive, so nothing is built (an sdist would run its `setup.py`). Only Python files and the
metadata of its `.dist-info` are taken: no compiled extension, no `.pth` file (which runs code when Python
starts), no `.data` directory (scripts), no link, no path outside the archive. Its `entry_points.txt` names the
detector, as an installed package would, under the group `dab.detectors`.
"""

from __future__ import annotations

import ast
import configparser
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from benchmark.registry import GROUP, DetectorSource

FILENAME = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+(-[0-9][A-Za-z0-9_.]*)?-(py3|py2\.py3)-none-any\.whl$")
UNPACKED_BYTES = 64 << 20
"""Most a wheel may hold unpacked (a small zip can unpack to gigabytes)."""
METADATA = {"METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt", "LICENSE", "LICENSE.txt"}
S_IFMT, S_IFLNK = 0o170000, 0o120000


class BadWheel(ValueError):
    """A wheel the host will not take, in one line."""


@dataclass(frozen=True)
class CheckedWheel:
    files: dict[str, bytes]
    entry: str
    """The detector, as ``module:Class``."""


def check_wheel(filename: str, data: bytes) -> CheckedWheel:
    """The wheel's files and its detector's entry point, or `BadWheel` saying what is wrong."""
    if not FILENAME.fullmatch(filename):
        raise BadWheel(f"{filename!r} is not a pure-Python wheel's name (NAME-VERSION-py3-none-any.whl)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as e:
        raise BadWheel(f"{filename} is not a readable wheel: {e}") from None
    if sum(i.file_size for i in infos) > UNPACKED_BYTES:
        raise BadWheel(f"{filename} unpacks to more than {UNPACKED_BYTES} bytes")
    files = {}
    for info in infos:
        name, path = info.filename, PurePosixPath(info.filename)
        if info.is_dir():
            continue
        if name.startswith("/") or "\\" in name or ".." in path.parts or ":" in name:
            raise BadWheel(f"{filename}: {name!r} lies outside the wheel")
        if (info.external_attr >> 16) & S_IFMT == S_IFLNK:
            raise BadWheel(f"{filename}: {name!r} is a link")
        in_metadata = len(path.parts) == 2 and path.parts[0].endswith(".dist-info")
        if in_metadata and path.name not in METADATA:
            raise BadWheel(f"{filename}: {name!r} is not wheel metadata ({', '.join(sorted(METADATA))})")
        if not in_metadata and (path.suffix != ".py" or path.parts[0].endswith(".data")):
            raise BadWheel(f"{filename}: {name!r} is not a Python file (a wheel may hold Python files and its "
                           f"metadata alone: no compiled code, .pth or data files)")
        content = archive.read(info)
        if path.suffix == ".py":
            try:
                ast.parse(content.decode("utf-8"), name)
            except (UnicodeDecodeError, SyntaxError, ValueError) as e:
                raise BadWheel(f"{filename}: {name} is not Python: {e.__class__.__name__}: {e}") from None
        files[name] = content
    return CheckedWheel(files, _entry(filename, files))


def _entry(filename: str, files: dict[str, bytes]) -> str:
    wheel = next((v for k, v in files.items() if k.endswith(".dist-info/WHEEL")), b"")
    if b"Root-Is-Purelib: true" not in wheel:
        raise BadWheel(f"{filename}: its .dist-info/WHEEL does not say Root-Is-Purelib: true")
    points = next((v for k, v in files.items() if k.endswith(".dist-info/entry_points.txt")), b"")
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(points.decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError) as e:
        raise BadWheel(f"{filename}: its entry_points.txt cannot be read: {e}") from None
    entries = list(parser[GROUP].values()) if parser.has_section(GROUP) else []
    if len(entries) != 1:
        raise BadWheel(f"{filename}: its entry_points.txt must name exactly one detector under [{GROUP}] "
                       f"(found {len(entries)})")
    return entries[0].replace(" ", "")


def unpack(wheel: Path, into: Path) -> DetectorSource:
    """Unpack a wheel (checked again: the file on disk is what runs) into `into`; the detector it names."""
    checked = check_wheel(wheel.name, wheel.read_bytes())
    for name, content in checked.files.items():
        path = into / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return DetectorSource("module", checked.entry, str(into))
