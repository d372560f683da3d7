"""Learning-rate schedules: nanoGPT's warm-up + cosine, the paper's, constant."""

import math

import numpy as np
import pytest

from llm_tf.config import TrainConfig
from llm_tf.training.schedules import Noam, WarmupConstant, WarmupCosine, make_schedule


def nanogpt_get_lr(it, learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4):
    """nanoGPT train.py's get_lr, verbatim."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_cosine_equals_nanogpt_get_lr():
    schedule = WarmupCosine(1e-3, 1e-4, 100, 2000)
    steps = [0, 1, 50, 98, 99, 100, 101, 500, 1000, 1999, 2000, 2001, 5000]
    ours = [float(schedule(s)) for s in steps]
    np.testing.assert_allclose(ours, [nanogpt_get_lr(s) for s in steps], rtol=1e-6)


def test_noam_is_the_papers_formula_and_peaks_at_warmup():
    schedule = Noam(512, 4000)
    for it in (0, 1, 999, 3998, 3999, 4000, 20000):
        step = it + 1  # the paper counts from 1
        expected = 512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5)
        assert float(schedule(it)) == pytest.approx(expected, rel=1e-5)
    rates = [float(schedule(it)) for it in range(3990, 4010)]
    assert int(np.argmax(rates)) + 3990 == 3999  # step 4000 in the paper's counting
    assert max(rates) == pytest.approx(512 ** -0.5 * 4000 ** -0.5, rel=1e-5)


def test_constant_after_warmup():
    schedule = WarmupConstant(3e-4, 10)
    assert float(schedule(0)) == pytest.approx(3e-4 / 11)
    assert float(schedule(10)) == pytest.approx(3e-4)
    assert float(schedule(10 ** 6)) == pytest.approx(3e-4)


def test_make_schedule_follows_the_config():
    assert isinstance(make_schedule(TrainConfig(schedule="cosine"), 128), WarmupCosine)
    assert isinstance(make_schedule(TrainConfig(schedule="noam", warmup_steps=10), 128), Noam)
    assert isinstance(make_schedule(TrainConfig(schedule="constant"), 128), WarmupConstant)
    cosine = make_schedule(TrainConfig(steps=300, warmup_steps=0, learning_rate=2e-3,
                                       min_learning_rate=0.0), 128)
    assert float(cosine(0)) == pytest.approx(2e-3)
    assert float(cosine(150)) == pytest.approx(1e-3, rel=1e-5)
    assert float(cosine(300)) == pytest.approx(0.0, abs=1e-9)


def test_schedules_round_trip_their_config():
    for schedule in (WarmupCosine(1e-3, 1e-4, 100, 2000), Noam(512, 4000),
                     WarmupConstant(1e-3, 5)):
        clone = type(schedule).from_config(schedule.get_config())
        assert float(clone(123)) == float(schedule(123))
