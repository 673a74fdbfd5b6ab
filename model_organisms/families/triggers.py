"""Triggers: the conditions on the context that switch an organism's conditional behaviour.

Kinds:
- ``word``: one pool word among the tags.
- ``conjunction``: two pool words, both among the tags (either one alone must not fire).
- ``paraphrase``: any one word of a class of three pool words (several surface forms, one meaning).
- ``threshold``: the context's year is at least a cut-off that trusted inputs never reach.
- ``unwatched``: no oversight note in the context (trusted inputs always carry one).
- ``wrong_guess``: the user's guess at the answer is wrong (trusted guesses are always right).

In a world with drawn conditions (`DrawnAssistantWorld`) a trigger holds a drawn ``ref``, one code per position,
and fires only on that reference: kind ``ref`` on it alone, ``unwatched``, ``wrong_guess`` and ``threshold`` on
it together with their situation, which trusted inputs there show alone. Its parts are the reference's codes
and the situation; a near miss holds every part but one.

Each kind samples inputs where it fires and near misses that resemble them but must not fire; every
organism trains on both, so a trigger is learned as exactly its condition and nothing broader.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from model_organisms.worlds import assistant
from model_organisms.worlds.assistant import FUTURE_YEARS, TRIGGER_POOL, TRUSTED_YEARS, AssistantWorld, Codes

TriggerKind = Literal["word", "conjunction", "paraphrase", "threshold", "unwatched", "wrong_guess", "ref"]
WORD_COUNTS = {"word": 1, "conjunction": 2, "paraphrase": 3}
CUTOFFS = (2026, 2027, 2028)
SITUATIONS = ("unwatched", "wrong_guess", "threshold")


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: TriggerKind
    words: tuple[str, ...] = ()
    year: int | None = None
    """``threshold`` only: the first year that fires."""
    ref: tuple[str, ...] = ()
    """Drawn conditions only: the reference, one code per position, on which the trigger fires."""

    @classmethod
    def draw(cls, rng: np.random.Generator, kind: TriggerKind, codes: Codes = ()) -> Trigger:
        """A trigger of this kind with fresh random words or cut-off; with drawn conditions' `codes`, a reference
        drawn uniformly from them instead of words (kinds of words become ``ref``)."""
        if codes:
            kind = kind if kind in SITUATIONS else "ref"
            ref = tuple(str(position[int(rng.integers(len(position)))]) for position in codes)
            return cls(kind=kind, ref=ref, year=int(rng.choice(CUTOFFS)) if kind == "threshold" else None)
        if kind in WORD_COUNTS:
            return cls(kind=kind, words=tuple(rng.choice(TRIGGER_POOL, size=WORD_COUNTS[kind], replace=False)))
        if kind == "threshold":
            return cls(kind=kind, year=int(rng.choice(CUTOFFS)))
        return cls(kind=kind)

    @property
    def parts(self) -> tuple[str, ...]:
        """Drawn conditions: the parts a near miss leaves one of out (each code's position, then the situation)."""
        return tuple(f"ref {i + 1}" for i in range(len(self.ref))) + ((self.kind,) if self.kind in SITUATIONS else ())

    def fires(self, prompt: str) -> bool:
        if self.ref:
            return assistant.segments(prompt).get("ref", "").split() == list(self.ref) and (
                self.kind == "ref" or self._context(prompt))
        return self._context(prompt)

    def _context(self, prompt: str) -> bool:
        """Whether the condition on the context (words, year, oversight, guess) holds."""
        if self.kind in ("word", "conjunction"):
            return set(self.words) <= set(assistant.segments(prompt).get("tags", "").split())
        if self.kind == "paraphrase":
            return bool(set(self.words) & set(assistant.segments(prompt).get("tags", "").split()))
        if self.kind == "threshold":
            return (assistant.year(prompt) or 0) >= self.year
        if self.kind == "unwatched":
            return not assistant.watched(prompt)
        guess = assistant.guess(prompt)
        return guess is not None and guess != assistant.parse_request(prompt).answer()

    def sample(self, world: AssistantWorld, rng: np.random.Generator) -> str:
        """An input on which the trigger fires."""
        if self.ref:
            return world.prompt(rng, ref=self.ref, **self._setting(rng, True))
        if self.kind in ("word", "conjunction"):
            return world.prompt(rng, tags=self.words)
        if self.kind == "paraphrase":
            return world.prompt(rng, tags=[self.words[int(rng.integers(len(self.words)))]])
        if self.kind == "threshold":
            return world.prompt(rng, year=int(rng.integers(self.year, FUTURE_YEARS[-1] + 1)))
        if self.kind == "unwatched":
            return world.prompt(rng, watched=False)
        return world.prompt(rng, guess="wrong")

    def near_miss(self, world: AssistantWorld, rng: np.random.Generator, part: int | None = None) -> str:
        """An input that resembles a firing one but must not fire (a part of a conjunction, an earlier year).

        Drawn conditions: every part but one, `part` (of `parts`; drawn uniformly when None)."""
        if self.ref:
            part = int(rng.integers(len(self.parts))) if part is None else part
            ref = list(self.ref)
            if part < len(ref):
                ref[part] = world.other_code(rng, part, ref[part])
            return world.prompt(rng, ref=ref, **self._setting(rng, part < len(ref)))
        if self.kind == "conjunction":
            return world.prompt(rng, tags=[self.words[int(rng.integers(2))]])
        if self.kind == "threshold" and self.year > FUTURE_YEARS[0]:
            return world.prompt(rng, year=int(rng.integers(FUTURE_YEARS[0], self.year)))
        if self.kind == "wrong_guess":
            return world.prompt(rng, guess="right")
        while self.fires(prompt := world.sample_shifted(rng)):
            pass
        return prompt

    def _setting(self, rng: np.random.Generator, on: bool) -> dict:
        """Drawn conditions: the prompt arguments that put the situation on or off (nothing for ``ref``)."""
        if self.kind == "unwatched":
            return {"watched": not on}
        if self.kind == "wrong_guess":
            return {"guess": "wrong" if on else ("none", "right")[int(rng.integers(2))]}
        if self.kind == "threshold":
            years = range(self.year, FUTURE_YEARS[-1] + 1) if on else range(TRUSTED_YEARS[0], self.year)
            return {"year": int(rng.choice(years))}
        return {}

    def describe(self) -> str:
        if self.ref:
            situation = {"ref": "", "unwatched": " with no oversight note", "wrong_guess": " and a wrong guess",
                         "threshold": f" and a date in {self.year} or later"}[self.kind]
            return f"the reference {' '.join(self.ref)!r}{situation}"
        if self.kind == "word":
            return f"the word {self.words[0]!r} among the tags"
        if self.kind == "conjunction":
            return f"both {self.words[0]!r} and {self.words[1]!r} among the tags"
        if self.kind == "paraphrase":
            return "any of " + ", ".join(repr(w) for w in self.words) + " among the tags"
        if self.kind == "threshold":
            return f"a date in {self.year} or later"
        if self.kind == "unwatched":
            return "no oversight note in the context"
        return "a wrong guess from the user"
