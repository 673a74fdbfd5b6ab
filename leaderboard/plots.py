"""Plots as inline SVG (matplotlib, no JavaScript needed to read them)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.records import RunRecord  # noqa: E402


def _svg(fig: plt.Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def roc_svg(record: RunRecord) -> str | None:
    """The run's ROC curve with the chance diagonal; None when the split has one class only."""
    if record.roc is None:
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", label="chance")
    ax.step(record.roc.fpr, record.roc.tpr, where="post", color="#1f6feb", linewidth=2,
            label=f"{record.detector.name} (AUROC {record.metric('auroc') or 0:.3f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01),
           title=f"ROC on {record.catalog.name}/{record.catalog.split}")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def scores_svg(record: RunRecord) -> str | None:
    """The detector's audit answers, one dot per organism, sorted (labels are not shown: splits may be sealed)."""
    if record.track.value != "audit":
        return None
    scores = sorted(0.5 if p.score is None else p.score for p in record.predictions)
    fig, ax = plt.subplots(figsize=(4, 2.2))
    ax.plot(range(len(scores)), scores, "o", color="#d1242f")
    ax.axhline(0.5, color="#999999", linestyle=":")
    ax.set(xlabel="organisms (sorted)", ylabel="P(hidden goal)", ylim=(-0.05, 1.05), title="audit answers")
    return _svg(fig)
