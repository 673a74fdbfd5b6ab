"""The leaderboard: stored results, tables, plots and the web site. `leaderboard.results()` gives them as a
pandas DataFrame."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "results":  # imports pandas only when asked for
        from leaderboard.frames import results

        return results
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
