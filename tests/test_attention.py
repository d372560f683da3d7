"""Attention is exactly softmax(QKᵀ/√d_k)V, and our multi-head layer equals Keras'."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from llm_tf.layers import (
    MultiHeadAttention,
    causal_mask,
    key_padding_mask,
    scaled_dot_product_attention,
)


def reference_attention(q, k, v, mask=None):
    """NumPy float64 softmax(QKᵀ/√d_k)V; masked scores are excluded from the softmax."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(k.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights @ v, weights


SHAPES = [  # (leading dims, Tq, Tk, Dk, Dv)
    ((), 1, 1, 1, 1),
    ((), 2, 2, 3, 3),
    ((3,), 5, 7, 8, 4),
    ((2, 4), 6, 6, 16, 16),
]


@pytest.mark.parametrize("lead, tq, tk, dk, dv", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_matches_numpy_float64_reference(lead, tq, tk, dk, dv, masked):
    rng = np.random.default_rng(tq * 100 + tk)
    q = rng.normal(size=lead + (tq, dk)).astype(np.float32)
    k = rng.normal(size=lead + (tk, dk)).astype(np.float32)
    v = rng.normal(size=lead + (tk, dv)).astype(np.float32)
    mask = None
    if masked:
        mask = rng.random(lead + (tq, tk)) < 0.7
        mask[..., 0] = True  # every query may attend somewhere
    expected_out, expected_w = reference_attention(q, k, v, mask)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    np.testing.assert_allclose(weights.numpy(), expected_w, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), expected_out, atol=1e-5)


def test_design_document_thinking_machines_example():
    """§4.1 prints weights [[0.5, 0.5], [0.5, 0.5]] and outputs [[0.25, 0.35, 0.45]] * 2.

    Both are wrong. QKᵀ = [[0.14, 0.32], [0.32, 0.77]]; after /√3 the rows are not
    constant, so the softmax cannot be uniform.
    """
    x = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    out, weights = scaled_dot_product_attention(x, x, x)
    scores = np.array([[0.14, 0.32], [0.32, 0.77]]) / np.sqrt(3)
    true_weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), true_weights, atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), [[0.474043, 0.525957], [0.435411, 0.564589]],
                               atol=1e-6)
    np.testing.assert_allclose(out.numpy(), true_weights @ x.astype(np.float64), atol=1e-6)
    np.testing.assert_allclose(out.numpy(), [[0.257787, 0.357787, 0.457787],
                                             [0.269377, 0.369377, 0.469377]], atol=1e-6)
    assert not np.allclose(weights.numpy(), 0.5, atol=1e-2)


def test_fully_masked_row_gives_zeros_not_nan():
    q = tf.random.normal((2, 3, 4))
    mask = tf.constant([[True, True, False], [False, False, False], [True, False, False]])
    out, weights = scaled_dot_product_attention(q, q, q, mask)
    assert np.isfinite(out.numpy()).all() and np.isfinite(weights.numpy()).all()
    np.testing.assert_array_equal(weights.numpy()[:, 1], 0.0)
    np.testing.assert_array_equal(out.numpy()[:, 1], 0.0)
    np.testing.assert_allclose(weights.numpy()[:, 0].sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_computed_in_float32_under_low_precision(dtype):
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 4, 8)).astype(np.float32) * 30 for _ in range(3))
    mask = np.tril(np.ones((4, 4), bool))
    out, weights = scaled_dot_product_attention(
        tf.cast(q, dtype), tf.cast(k, dtype), tf.cast(v, dtype), mask)
    assert weights.dtype == tf.float32 and out.dtype == tf.as_dtype(dtype)
    assert np.isfinite(weights.numpy()).all()
    lowered = [tf.cast(tf.cast(a, dtype), tf.float32).numpy() for a in (q, k, v)]
    expected_out, expected_w = reference_attention(*lowered, mask)
    np.testing.assert_allclose(weights.numpy(), expected_w, atol=1e-5)
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), expected_out,
                               rtol=1e-2, atol=0.1)


def copy_weights_from_keras(ours, theirs, d_model):
    """Keras' EinsumDense kernels are (D, H, Dh) / (H, Dh, D): flatten to our (D, D)."""
    for mine, other in [(ours.query_dense, theirs._query_dense),
                        (ours.key_dense, theirs._key_dense),
                        (ours.value_dense, theirs._value_dense)]:
        kernel, bias = other.get_weights()
        mine.set_weights([kernel.reshape(d_model, d_model), bias.reshape(d_model)])
    kernel, bias = theirs._output_dense.get_weights()
    ours.output_dense.set_weights([kernel.reshape(d_model, d_model), bias])


@pytest.mark.parametrize("mask_kind", ["none", "padding", "causal", "padding+causal"])
def test_multi_head_attention_equals_keras(mask_kind):
    batch, tq, tk, d_model, heads = 2, 5, 7, 16, 4
    # Dropout 0: keras-team/keras#23038 drops the causal mask when dropout > 0.
    theirs = keras.layers.MultiHeadAttention(heads, d_model // heads, dropout=0.0)
    ours = MultiHeadAttention(d_model, heads)
    rng = np.random.default_rng(1)
    query = rng.normal(size=(batch, tq, d_model)).astype(np.float32)
    value = rng.normal(size=(batch, tk, d_model)).astype(np.float32)
    theirs(query, value)
    ours(query, value)
    copy_weights_from_keras(ours, theirs, d_model)

    padding = np.ones((batch, tk), bool)
    padding[0, -3:] = False
    padding[1, -1:] = False
    use_causal = "causal" in mask_kind
    our_mask = key_padding_mask(tf.constant(padding)) if "padding" in mask_kind else None
    their_mask = (np.broadcast_to(padding[:, None, :], (batch, tq, tk))
                  if "padding" in mask_kind else None)
    expected, expected_w = theirs(query, value, attention_mask=their_mask,
                                  use_causal_mask=use_causal, return_attention_scores=True)
    out = ours(query, value, attention_mask=our_mask, use_causal_mask=use_causal)
    weights = ours.attention_weights(query, value, attention_mask=our_mask,
                                     use_causal_mask=use_causal)
    np.testing.assert_allclose(weights.numpy(), expected_w.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)


def test_heads_are_split_and_merged_per_head():
    """Head h of the output only uses columns h·Dh:(h+1)·Dh of Q, K and V."""
    d_model, heads = 8, 2
    layer = MultiHeadAttention(d_model, heads, use_bias=False)
    x = tf.random.normal((1, 3, d_model))
    weights = layer.attention_weights(x)
    q = layer.query_dense(x).numpy()[0]
    k = layer.key_dense(x).numpy()[0]
    for h in range(heads):
        columns = slice(h * 4, (h + 1) * 4)
        _, expected = reference_attention(q[:, columns], k[:, columns], k[:, columns])
        np.testing.assert_allclose(weights.numpy()[0, h], expected, atol=1e-5)


def test_cache_gives_same_output_as_full_attention_step_by_step():
    d_model, heads, length = 16, 4, 6
    layer = MultiHeadAttention(d_model, heads)
    x = tf.random.normal((2, length, d_model))
    full = layer(x, use_causal_mask=True)
    cache = tf.zeros((2, 2, heads, length, d_model // heads))
    for t in range(length):
        step, cache = layer.call_with_cache(x[:, t:t + 1], cache, t)
        np.testing.assert_allclose(step.numpy()[:, 0], full.numpy()[:, t], atol=1e-5)


def test_causal_mask_matches_numpy_tril():
    np.testing.assert_array_equal(causal_mask(4).numpy(), np.tril(np.ones((4, 4), bool)))
    # Queries 2 and 3 of a length-5 cache: they see keys up to their own position.
    np.testing.assert_array_equal(causal_mask(2, 5, query_offset=2).numpy(),
                                  [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


@pytest.mark.parametrize("kwargs, name", [
    (dict(d_model=10, num_heads=3), "d_model"),
    (dict(d_model=8, num_heads=0), "num_heads"),
    (dict(d_model=8, num_heads=2, dropout=1.0), "dropout"),
    (dict(d_model=8, num_heads=2, dropout=-0.1), "dropout"),
    (dict(d_model=6, num_heads=2, rotary_max_wavelength=10000), "head width"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MultiHeadAttention(**kwargs)
