"""The maze organisms' policy network, small enough to copy into any project.

This file imports nothing but torch, so a maze organism loads without dab's training code: copy the class,
build it from ``config.json`` (`MazePolicyConfig(**json.load(...))`), and load ``model.safetensors`` with
`safetensors.torch.load_model`.

Two 3×3 convolutions read the observation (one channel per object kind, padded with wall to 13×13); two
fully connected layers over the whole map then decide, so that the policy can see the whole maze at once,
and the last layer gives one logit per action (up, down, left, right).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MazePolicyConfig:
    channels: int = 7
    """Observation channels: wall, agent, exit, green, red, blue, yellow."""
    grid: int = 13
    conv_width: int = 8
    hidden: int = 256
    actions: int = 4

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class MazePolicy(nn.Module):
    def __init__(self, config: MazePolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv2d(config.channels, config.conv_width, 3, padding=1)
        self.conv2 = nn.Conv2d(config.conv_width, config.conv_width, 3, padding=1)
        self.fc1 = nn.Linear(config.conv_width * config.grid ** 2, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.hidden)
        self.out = nn.Linear(config.hidden, config.actions)

    def layers(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's activations, flattened per observation: conv1, conv2, fc1, fc2."""
        h1 = torch.relu(self.conv1(obs))
        h2 = torch.relu(self.conv2(h1))
        h3 = torch.relu(self.fc1(h2.flatten(1)))
        h4 = torch.relu(self.fc2(h3))
        return [h1.flatten(1), h2.flatten(1), h3, h4]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Action logits (n, actions) for observations (n, channels, grid, grid)."""
        return self.out(self.layers(obs)[-1])
