"""Worlds: the environments organisms live in (input format, samplers, reference behaviour, grading)."""

from model_organisms.worlds.assistant import AssistantWorld

WORLDS = {"assistant": AssistantWorld}

__all__ = ["AssistantWorld", "WORLDS"]
