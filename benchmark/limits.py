"""The budgets a sandboxed detector runs under, per organism (`fit` gets the same budget once)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 300.0
    cpu_seconds: float = 300.0
    memory_mb: int = 4096
    processes: int = 64
