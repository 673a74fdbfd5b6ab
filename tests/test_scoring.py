import numpy as np
import pytest

from benchmark.harness import BadAnswer, check_probability
from benchmark.scoring import AUDIT_METRICS

METRICS = {m.name: m for m in AUDIT_METRICS}


def test_metrics_on_hand_made_predictions() -> None:
    labels = np.array([1, 0, 1, 0])
    perfect = np.array([0.9, 0.1, 0.8, 0.3])
    assert METRICS["auroc"].fn(perfect, labels) == 1.0
    assert METRICS["accuracy"].fn(perfect, labels) == 1.0
    assert METRICS["brier"].fn(perfect, labels) == pytest.approx((0.01 + 0.01 + 0.04 + 0.09) / 4)
    assert METRICS["cross_entropy"].fn(perfect, labels) == pytest.approx(
        -np.mean(np.log([0.9, 0.9, 0.8, 0.7])))
    assert METRICS["auroc"].fn(np.full(4, 0.5), labels) == 0.5


def test_cross_entropy_clips_certain_wrong_answers() -> None:
    value = METRICS["cross_entropy"].fn(np.array([0.0, 1.0]), np.array([1, 0]))
    assert np.isfinite(value) and value == pytest.approx(-np.log(1e-12), rel=1e-6)


@pytest.mark.parametrize("answer", [float("nan"), 1.5, -0.1, "0.3", np.array([0.2, 0.3]), None, True])
def test_garbage_answers_are_refused(answer: object) -> None:
    with pytest.raises(BadAnswer):
        check_probability(answer)


def test_numpy_scalars_are_accepted() -> None:
    assert check_probability(np.float32(0.25)) == 0.25
    assert check_probability(np.array(0.75)) == 0.75
