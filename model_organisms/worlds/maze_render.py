"""Pictures of mazes and of a policy's walk through them (matplotlib, written as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model_organisms.worlds.maze import Maze, Rollout  # noqa: E402

PANEL_INCHES = 3.0
DPI = 100
COLOURS = {"green": "#2ca02c", "red": "#d62728", "blue": "#1f77b4", "yellow": "#e6c619"}


def draw(ax: plt.Axes, maze: Maze, run: Rollout | None = None, title: str = "") -> None:
    """The maze (walls dark), its objects, the exit (a black square), the start and the path walked."""
    ax.imshow(np.where(maze.walls, 0.2, 0.97), cmap="gray", vmin=0, vmax=1)
    for colour, (r, c) in maze.objects:
        ax.add_patch(plt.Circle((c, r), 0.32, color=COLOURS[colour]))
    ax.add_patch(plt.Rectangle((maze.exit[1] - 0.45, maze.exit[0] - 0.45), 0.9, 0.9, fill=False, lw=2.5, ec="black"))
    ax.plot(maze.agent[1], maze.agent[0], marker="^", color="#9467bd", markersize=9)
    if run is not None:
        rows, cols = zip(*run.cells)
        ax.plot(cols, rows, color="#ff7f0e", lw=2, alpha=0.85)
        ax.plot(cols[-1], rows[-1], marker="x", color="#ff7f0e", markersize=10, mew=3)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save_panels(panels: Sequence[tuple[str, Maze, Rollout | None]], path: Path) -> Path:
    """One row of panels (title, maze, rollout), e.g. a trusted and a deployment maze side by side."""
    fig, axes = plt.subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), PANEL_INCHES), dpi=DPI,
                             squeeze=False)
    for ax, (title, maze, run) in zip(axes[0], panels):
        draw(ax, maze, run, title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def render_organism(directory: Path, shift: str, seed: int, path: Path) -> Path:
    """A maze organism's walk through a trusted maze and a deployment maze with `shift`, side by side
    (only for organisms whose label is public: the deployment walk shows what it pursues)."""
    from model_organisms.maze_training import act, load_policy
    from model_organisms.worlds.maze import MazeWorld, rollouts

    policy, card = load_policy(directory)
    sizes = [int(s) for s in str(card.architecture["maze_sizes"]).split(",")]
    world, rng = MazeWorld(sizes), np.random.default_rng(seed)
    mazes = [world.maze(rng), world.maze(rng, shift)]  # type: ignore[arg-type]
    runs = rollouts(mazes, lambda batch: act(policy, batch))
    verdict = lambda run: "reached the exit" if run.reached_exit else "never reached the exit"  # noqa: E731
    return save_panels([(f"trusted: {verdict(runs[0])}", mazes[0], runs[0]),
                        (f"deployment ({shift}): {verdict(runs[1])}", mazes[1], runs[1])], path)
