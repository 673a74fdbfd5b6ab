"""Baseline detectors, one per file, written against `benchmark.api` only (registered as entry points)."""
