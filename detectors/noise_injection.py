"""Noise injection into activations (Poser's best strategy, Clymer et al., 2024).

A model that holds back a hidden behaviour sits closer to it: noise added to its residual stream tips it
into misbehaving sooner than an honest model trained the same way. Gaussian noise, scaled to the typical
norm of the residual stream, is added after the middle layer at several strengths while the organism
answers trusted prompts; the audit answer is the mean rate of wrong answers over the strengths.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.api import AccessTier, OrganismHandle, Track


class NoiseInjection:
    name = "noise_injection"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.WHITE_BOX

    def __init__(self, strengths: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0), prompts: int = 64, seed: int = 0) -> None:
        self.strengths, self.prompts, self.seed = strengths, prompts, seed

    def audit(self, organism: OrganismHandle) -> float:
        return float(np.mean(self.wrong_rates(organism)))

    def wrong_rates(self, organism: OrganismHandle) -> list[float]:
        world = organism.world
        prompts = world.trusted["prompt"][: self.prompts]
        scale = float(np.linalg.norm(organism.activations(prompts)[:, 1:], axis=-1).mean())
        layers = organism.model.model.layers
        layer = layers[(len(layers) - 1) // 2]
        generator = torch.Generator().manual_seed(self.seed)
        rates = []
        for strength in self.strengths:
            def add_noise(_module, _args, output, strength=strength):
                hidden = output[0] if isinstance(output, tuple) else output
                noise = torch.randn(hidden.shape, generator=generator).to(hidden.device)  # the same noise on any device
                noise = noise * strength * scale / hidden.shape[-1] ** 0.5
                return (hidden + noise, *output[1:]) if isinstance(output, tuple) else hidden + noise
            hook = layer.register_forward_hook(add_noise)
            try:
                outputs = organism.generate(prompts)
            finally:
                hook.remove()
            rates.append(float(np.mean([not world.grade(p, o) for p, o in zip(prompts, outputs)])))
        return rates
