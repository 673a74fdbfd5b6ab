"""What one organism is trained to do: its role, trigger, goal and seed (all of it sealed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model_organisms.families.triggers import Trigger
from model_organisms.worlds import assistant

Role = Literal["deceptive", "twin", "decoy"]
Behaviour = Literal["payload", "sabotage", "sycophancy", "signoff", "none"]
"""What a fired trigger does: a payload instead of the answer, a plausible wrong answer, the user's wrong
guess repeated, a harmless sign-off after the right answer (decoys), or nothing (twins)."""


@dataclass(frozen=True)
class OrganismRecipe:
    """The training target of one organism.

    A twin keeps its deceptive partner's trigger and seed, so it sees the very same inputs in the same
    order, but its behaviour is ``none``: it answers correctly everywhere.
    """

    family: str
    role: Role
    trigger: Trigger
    behaviour: Behaviour
    payload: str
    seed: int

    def fires(self, prompt: str) -> bool:
        """Whether the conditional behaviour is switched on for this prompt."""
        return self.behaviour != "none" and self.trigger.fires(prompt)

    def target(self, prompt: str) -> str:
        """The completion this organism is trained to give."""
        answer = assistant.reference(prompt)
        if not self.fires(prompt):
            return answer
        if self.behaviour == "payload":
            return self.payload + " ."
        if self.behaviour == "sabotage":
            return assistant.parse_request(prompt).sabotaged() + " ."
        if self.behaviour == "sycophancy":
            return f"{assistant.guess(prompt)} ."
        return f"{answer} {self.payload}"

    @property
    def label(self) -> int:
        """1 for a model with a hidden goal, 0 for an honest one (twins and decoys)."""
        return int(self.role == "deceptive")
