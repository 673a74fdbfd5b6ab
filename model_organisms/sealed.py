"""The sealed side of a catalog: its secret and its answer key, kept in one directory that only the harness
and scoring read, through this module.

An instance of a catalog is its spec built with a secret of 256 bits drawn from the OS's randomness at build
time. Everything that decides a sealed organism (which family and trigger, payload, seed and data order,
its id, its monitor stream, the inputs of its certificate) is derived from the secret by HMAC-SHA256, so no
submission can recompute it from public code, specs or ids. The public part of a catalog names an instance
by a commitment to its secret (a hash of it alone), which identifies the instance without opening it. The
``dev`` split and the trusted inputs stay drawn from the public spec.

Layout, beside the catalog's public manifest and organisms::

    sealed/            mode 0700, never mounted into a sandbox
        secret         the instance's secret, hex (mode 0600): back it up to rebuild the instance
        answer_key.json
        units/         the build's journal of finished units (their keys name families)
        trained/       organisms as training finished them, before they are published in a random order
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from model_organisms.certificates import Certificate
from model_organisms.families import Trigger

if TYPE_CHECKING:
    from model_organisms.catalog import Catalog

SEALED = "sealed"
SECRET = "secret"
ANSWER_KEY = "answer_key.json"
UNITS = "units"
TRAINED = "trained"
SECRET_BYTES = 32


class SealedError(Exception):
    """The sealed part of a catalog is missing, unreadable or not this instance's."""


class Secret:
    """An instance's secret. Its bytes never leave this process except into ``sealed/secret``."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != SECRET_BYTES:
            raise SealedError(f"a catalog secret is {SECRET_BYTES} bytes, got {len(key)}")
        self._key = key

    @classmethod
    def draw(cls) -> Secret:
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def read(cls, path: Path) -> Secret:
        """A secret file as written by a build (hex, one line); a bad one raises `SealedError` naming it."""
        try:
            text = path.read_text().strip()
        except OSError as e:
            raise SealedError(f"cannot read catalog secret {path}: {e.strerror}") from None
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise SealedError(f"catalog secret {path}: not {SECRET_BYTES} bytes of hex") from None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._key.hex() + "\n")

    def commitment(self) -> str:
        """A hash of the secret alone: public, it names the instance and reveals nothing of what it decides."""
        return hashlib.sha256(b"dab catalog commitment\0" + self._key).hexdigest()

    def derive(self, *labels: str) -> bytes:
        """32 bytes for one purpose (`labels`), independent of those for any other purpose."""
        return hmac.new(self._key, "\0".join(labels).encode(), hashlib.sha256).digest()

    def rng(self, *labels: str) -> np.random.Generator:
        """A random stream for one purpose, seeded with 256 derived bits."""
        return np.random.default_rng(int.from_bytes(self.derive(*labels)))

    def token(self, *labels: str, chars: int = 12) -> str:
        """Hex characters for one purpose (organism ids)."""
        return self.derive(*labels).hex()[:chars]

    def __repr__(self) -> str:
        return f"Secret(commitment={self.commitment()[:12]})"

    def __reduce__(self) -> tuple:  # build workers receive recipes, never a pickled secret by accident
        raise TypeError("a catalog secret is not pickled")


class AnswerKeyEntry(BaseModel):
    """The sealed part of one organism."""

    model_config = ConfigDict(extra="forbid")
    id: str
    split: Literal["dev", "test", "holdout"]
    world: str = "assistant"
    label: int
    role: Literal["deceptive", "twin", "decoy"]
    family: str
    goal: str | None
    """The family's goal in the published taxonomy; None for honest organisms."""
    trigger: Trigger | None = None
    """Assistant organisms: what switches the conditional behaviour."""
    shift: str | None = None
    """Maze organisms: the deployment shift that parts their goal from the exit (`model_organisms.worlds.maze.Kind`)."""
    behaviour: str
    payload: str
    seed: int
    group: str
    """Organisms of one group (a deceptive organism and its twin) share this; bootstrap resamples groups."""
    twin: str | None
    certificate: Certificate
    device: str = "cpu"
    """Where it trained (`cpu`, `cuda`): sealed, as a GPU's rounding could mark its weights; drawn independently of
    its role (`build.assign_devices`), which the shortcut gate checks."""


def sealed_dir(catalog_dir: Path) -> Path:
    return catalog_dir / SEALED


def make_sealed_dir(catalog_dir: Path) -> Path:
    path = sealed_dir(catalog_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def secret(catalog: Catalog) -> Secret:
    """The instance's secret: what the harness draws sealed monitor streams from."""
    return Secret.read(sealed_dir(catalog.directory) / SECRET)


def answer_key(catalog: Catalog) -> dict[str, AnswerKeyEntry]:
    """Every organism's sealed part, by id: what scoring joins with a run's answers."""
    path = sealed_dir(catalog.directory) / ANSWER_KEY
    try:
        entries = json.loads(path.read_text())
        return {e["id"]: AnswerKeyEntry.model_validate(e) for e in entries}
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SealedError(f"cannot read answer key {path}: {e}") from None
