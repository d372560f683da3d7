"""Samplers: greedy, temperature, top-k, top-p, seeds (no model needed)."""

import re

import numpy as np
import pytest
import tensorflow as tf

from llm_tf.generation import samplers

LOGITS = tf.constant([[2.0, 1.0, 0.5, -1.0, 0.0, 3.0],
                      [0.0, 0.0, 4.0, 1.0, -2.0, 0.5]])  # (2, 6)


def test_greedy_is_the_argmax_of_each_row():
    assert samplers.greedy(LOGITS).numpy().tolist() == [5, 2]
    assert samplers.greedy(LOGITS).dtype == tf.int32


@pytest.mark.parametrize("seed", [0, 1, -7, 2**31 - 1])
def test_temperature_zero_is_greedy_whatever_the_seed_and_filters(seed):
    for step in range(3):
        tokens = samplers.sample(LOGITS, seed, step, temperature=0.0, top_k=3, top_p=0.5)
        assert tokens.numpy().tolist() == [5, 2]


def test_top_k_1_is_greedy_at_any_temperature():
    for seed in range(5):
        tokens = samplers.sample(LOGITS, seed, 0, temperature=5.0, top_k=1)
        assert tokens.numpy().tolist() == [5, 2]


def _frequencies(logits_row, num_rows=20000, **kwargs):
    logits = tf.tile(tf.constant([logits_row], tf.float32), [num_rows, 1])  # (N, V)
    tokens = samplers.sample(logits, seed=123, step=0, **kwargs).numpy()
    return np.bincount(tokens, minlength=len(logits_row)) / num_rows


def test_samples_follow_softmax_of_logits_over_temperature():
    row = [1.0, 0.0, -1.0, 2.0]
    for temperature in (1.0, 0.5, 2.0):
        expected = tf.nn.softmax(tf.constant(row) / temperature).numpy()
        # 20000 draws: the standard error of each frequency is below 0.0036.
        np.testing.assert_allclose(_frequencies(row, temperature=temperature), expected,
                                   atol=0.015)


def test_top_k_samples_only_the_k_most_likely_renormalised():
    row = [1.0, 0.0, -1.0, 2.0, 0.5]
    frequencies = _frequencies(row, temperature=1.0, top_k=2)
    assert frequencies[[1, 2, 4]].sum() == 0
    expected = tf.nn.softmax(tf.constant([1.0, 2.0])).numpy()
    np.testing.assert_allclose(frequencies[[0, 3]], expected, atol=0.015)


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    filtered = samplers.filter_top_k_top_p(LOGITS, top_k=100, top_p=1.0)
    np.testing.assert_array_equal(filtered.numpy(), LOGITS.numpy())


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probabilities = np.array([0.5, 0.3, 0.15, 0.05])
    logits = tf.constant([np.log(probabilities)], tf.float32)
    kept = lambda p: np.isfinite(  # noqa: E731
        samplers.filter_top_k_top_p(logits, 0, p).numpy()[0]).sum()
    assert kept(0.3) == 1  # the most likely token is always kept
    assert kept(0.5) == 1
    assert kept(0.7) == 2
    assert kept(0.81) == 3
    assert kept(0.96) == 4
    assert kept(1.0) == 4


def test_top_p_samples_renormalise_over_the_nucleus():
    row = np.log([0.5, 0.3, 0.15, 0.05]).tolist()
    frequencies = _frequencies(row, temperature=1.0, top_p=0.7)
    assert frequencies[2] == 0 and frequencies[3] == 0
    np.testing.assert_allclose(frequencies[:2], [0.625, 0.375], atol=0.015)


def test_top_k_then_top_p_on_what_top_k_kept():
    logits = tf.constant([np.log([0.4, 0.3, 0.2, 0.1])], tf.float32)
    # Top-k 3 renormalises to [0.444, 0.333, 0.222]: the mass before the third
    # token is 0.777 >= 0.75, so top-p keeps two. Top-p alone sees 0.4 + 0.3 = 0.7
    # < 0.75 before the third token and keeps three.
    filtered = samplers.filter_top_k_top_p(logits, top_k=3, top_p=0.75).numpy()[0]
    assert np.isfinite(filtered).tolist() == [True, True, False, False]
    filtered = samplers.filter_top_k_top_p(logits, top_k=0, top_p=0.75).numpy()[0]
    assert np.isfinite(filtered).tolist() == [True, True, True, False]


def test_same_seed_and_step_repeat_other_seeds_or_steps_differ():
    logits = tf.zeros((4, 50))
    draw = lambda seed, step: samplers.sample(logits, seed, step).numpy().tolist()  # noqa: E731
    assert draw(7, 0) == draw(7, 0)
    assert draw(7, 0) != draw(8, 0)
    assert draw(7, 0) != draw(7, 1)


def test_noise_of_a_row_does_not_depend_on_the_batch_size():
    small = samplers.uniform_noise(5, 3, (1, 30)).numpy()
    large = samplers.uniform_noise(5, 3, (6, 30)).numpy()
    np.testing.assert_array_equal(small[0], large[0])
    assert not np.array_equal(large[0], large[1])
    assert large.min() > 0 and large.max() < 1


def test_sampling_is_identical_with_and_without_xla():
    logits = tf.random.stateless_normal((8, 300), seed=(1, 2))
    args = (tf.constant(11), tf.constant(4), tf.constant(0.9), tf.constant(50),
            tf.constant(0.95))

    def draw(logits, seed, step, temperature, top_k, top_p):
        return (samplers.sample(logits, seed, step, temperature, top_k, top_p),
                samplers.uniform_noise(seed, step, tf.shape(logits)))

    eager = draw(logits, *args)
    xla = tf.function(draw, jit_compile=True)(logits, *args)
    np.testing.assert_array_equal(eager[0].numpy(), xla[0].numpy())
    np.testing.assert_array_equal(eager[1].numpy(), xla[1].numpy())


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature="1"), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=-0.2), "top_p"),
])
def test_bad_sampling_parameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`.*Received: {name}="):
        samplers.Sampling(**kwargs)


def test_good_sampling_parameters_pass_and_give_the_graph_its_tensors():
    sampling = samplers.Sampling(1.5, 40, 0.9, seed=7)
    temperature, top_k, top_p, seed = sampling.tensors()
    assert (temperature.dtype, top_k.dtype, top_p.dtype, seed.dtype) == \
        (tf.float32, tf.int32, tf.float32, tf.int32)
    assert (float(temperature), int(top_k), float(top_p), int(seed)) == \
        (1.5, 40, pytest.approx(0.9), 7)
    assert samplers.Sampling(seed=2**31).seed == -2**31  # wrapped into int32
    fresh = samplers.Sampling(temperature=1.0)
    assert isinstance(fresh.seed, int)  # None drew a seed, which the object keeps


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=-0.1), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
])
def test_graph_checks_state_the_same_rules(kwargs, name):
    values = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, **kwargs}
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(samplers.RULES[name])):
        samplers.Sampling.graph_checks(tf.constant(float(values["temperature"])),
                                       tf.constant(int(values["top_k"])),
                                       tf.constant(float(values["top_p"])))
