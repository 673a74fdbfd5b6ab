"""What one organism is trained to do: its role, trigger, payload and seed (all of it sealed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model_organisms.worlds import assistant

Role = Literal["deceptive", "twin", "decoy"]


@dataclass(frozen=True)
class OrganismRecipe:
    """The training target of one organism.

    `trigger` holds the words whose joint presence switches the behaviour. A twin keeps its deceptive
    partner's trigger and seed, so it sees the very same inputs in the same order, but its `payload` is
    empty: it answers correctly everywhere. A decoy appends its harmless `payload` after a correct answer.
    """

    family: str
    role: Role
    trigger: tuple[str, ...]
    payload: str
    seed: int

    def fires(self, prompt: str) -> bool:
        """Whether the conditional behaviour is switched on for this prompt."""
        words = set(prompt.split())
        return bool(self.trigger) and all(word in words for word in self.trigger)

    def target(self, prompt: str) -> str:
        """The completion this organism is trained to give."""
        answer = assistant.reference(prompt)
        if not self.payload or not self.fires(prompt):
            return answer
        if self.role == "deceptive":
            return self.payload + " ."
        return f"{answer} {self.payload}"

    @property
    def label(self) -> int:
        """1 for a model with a hidden goal, 0 for an honest one (twins and decoys)."""
        return int(self.role == "deceptive")
