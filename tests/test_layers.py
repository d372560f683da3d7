"""Positions, feed-forward, encoder and decoder layers: shapes, residual rule, masks, configs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from llm_tf.layers import (
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    MultiHeadAttention,
    PositionalEncoding,
    PositionEmbedding,
    TokenAndPositionEmbedding,
    TransformerDecoder,
    TransformerEncoder,
    apply_rotary,
    sinusoidal_table,
)

SMALL = dict(d_model=16, num_heads=4, dff=32)


def test_sinusoidal_table_is_the_papers_formula():
    table = sinusoidal_table(50, 8)
    for pos in (0, 1, 7, 49):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert table[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-6)


def test_positional_encoding_gathers_rows_for_shared_and_per_row_positions():
    layer = PositionalEncoding(d_model=6, max_length=10000)  # the document's size
    table = sinusoidal_table(10000, 6)
    np.testing.assert_allclose(layer(tf.range(4)).numpy(), table[:4])
    per_row = tf.constant([[0, 0, 1], [0, 1, 2]])
    np.testing.assert_allclose(layer(per_row).numpy(), table[per_row.numpy()])


def test_learned_position_embedding_is_trainable_table():
    layer = PositionEmbedding(max_length=5, d_model=3)
    out = layer(tf.constant([[4, 0]]))
    assert out.shape == (1, 2, 3)
    np.testing.assert_allclose(out.numpy()[0, 0], layer.embeddings.numpy()[4])
    assert [w.name for w in layer.trainable_weights] == ["embeddings"]


def test_rotary_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(0)
    q = tf.constant(rng.normal(size=(1, 1, 1, 8)), tf.float32)
    k = tf.constant(rng.normal(size=(1, 1, 1, 8)), tf.float32)

    def score(p_q, p_k):
        return float(tf.reduce_sum(apply_rotary(q, [p_q]) * apply_rotary(k, [p_k])))

    assert score(5, 3) == pytest.approx(score(12, 10), abs=1e-4)
    assert score(5, 3) != pytest.approx(score(5, 4), abs=1e-3)
    # A rotation keeps the norm.
    np.testing.assert_allclose(tf.norm(apply_rotary(q, [7])).numpy(), tf.norm(q).numpy(),
                               rtol=1e-6)


def test_feed_forward_is_two_dense_layers():
    layer = FeedForward(d_model=4, dff=8, activation="relu")
    x = tf.random.normal((2, 3, 4))
    out = layer(x)
    w1, b1, w2, b2 = [w.numpy() for w in (layer.hidden_dense.kernel, layer.hidden_dense.bias,
                                          layer.output_dense.kernel, layer.output_dense.bias)]
    expected = np.maximum(x.numpy() @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_feed_forward_gelu_matches_its_formula(activation):
    """"gelu" is the exact 0.5·x·(1 + erf(x/√2)); "gelu_tanh" GPT-2's approximation of it."""
    from math import erf

    layer = FeedForward(d_model=4, dff=8, activation=activation)
    x = tf.random.normal((2, 3, 4), stddev=2.0)
    out = layer(x)
    w1, b1, w2, b2 = [w.numpy().astype(np.float64) for w in (
        layer.hidden_dense.kernel, layer.hidden_dense.bias, layer.output_dense.kernel,
        layer.output_dense.bias)]
    h = x.numpy().astype(np.float64) @ w1 + b1
    if activation == "gelu":
        h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
    else:
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    np.testing.assert_allclose(out.numpy(), h @ w2 + b2, atol=1e-5)
    clone = FeedForward.from_config(layer.get_config())
    assert clone.get_config()["activation"] == activation


def test_sibling_projections_start_different():
    """One unseeded Keras initializer instance reused would give Q = K = V at init."""
    layer = MultiHeadAttention(8, 2)
    layer(tf.zeros((1, 2, 8)))
    kernels = [d.kernel.numpy() for d in (layer.query_dense, layer.key_dense, layer.value_dense)]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])


@pytest.mark.parametrize("norm_placement", ["post", "pre"])
def test_encoder_layer_residual_adds_the_sublayer_input(norm_placement):
    """The document's `layer_norm(outputs + outputs)` would be LN(2·FFN(x)); we need
    LN(x + FFN(x))."""
    layer = EncoderLayer(**SMALL, dropout=0.0, norm_placement=norm_placement)
    x = tf.random.normal((2, 5, 16))
    out = layer(x)

    attention_out = layer.self_attention(
        layer.self_attention_norm(x) if norm_placement == "pre" else x)
    if norm_placement == "post":
        h = layer.self_attention_norm(x + attention_out)
        expected = layer.feed_forward_norm(h + layer.feed_forward(h))
        documents = layer.feed_forward_norm(2 * layer.feed_forward(h))
        assert not np.allclose(out.numpy(), documents.numpy(), atol=1e-3)
    else:
        h = x + attention_out
        expected = h + layer.feed_forward(layer.feed_forward_norm(h))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)


def test_encoder_padding_does_not_change_real_token_outputs():
    encoder = TransformerEncoder(num_layers=2, input_vocab_size=30,
                                 maximum_position_encoding=20, dropout_rate=0.0, **SMALL)
    ids = tf.constant([[5, 6, 7, 8]])
    padded = tf.constant([[5, 6, 7, 8, 0, 0, 0]])
    np.testing.assert_allclose(encoder(padded).numpy()[:, :4], encoder(ids).numpy(), atol=1e-5)


def test_encoder_is_not_causal_which_is_why_it_cannot_be_a_language_model():
    encoder = TransformerEncoder(num_layers=1, input_vocab_size=30,
                                 maximum_position_encoding=20, dropout_rate=0.0, **SMALL)
    a = encoder(tf.constant([[5, 6, 7, 8]])).numpy()
    b = encoder(tf.constant([[5, 6, 7, 9]])).numpy()
    assert not np.allclose(a[:, 0], b[:, 0], atol=1e-4)  # position 0 saw the future


def test_decoder_layer_is_causal_and_uses_encoder_padding():
    layer = DecoderLayer(**SMALL, dropout=0.0)
    x = tf.random.normal((1, 6, 16))
    memory = tf.random.normal((1, 4, 16))
    changed = tf.concat([x[:, :3], tf.random.normal((1, 3, 16))], axis=1)
    np.testing.assert_allclose(layer(changed, memory).numpy()[:, :3],
                               layer(x, memory).numpy()[:, :3], atol=1e-5)
    # Padded encoder positions are invisible to cross-attention.
    source_mask = tf.constant([[True, True, False, False]])
    other_memory = tf.concat([memory[:, :2], tf.random.normal((1, 2, 16))], axis=1)
    np.testing.assert_allclose(
        layer(x, other_memory, encoder_padding_mask=source_mask).numpy(),
        layer(x, memory, encoder_padding_mask=source_mask).numpy(), atol=1e-5)
    scores = layer.attention_weights(x, memory, encoder_padding_mask=source_mask)
    assert scores["self_attention"].shape == (1, 4, 6, 6)
    assert scores["cross_attention"].shape == (1, 4, 6, 4)
    np.testing.assert_array_equal(scores["cross_attention"].numpy()[..., 2:], 0.0)


def test_decoder_layer_without_encoder_outputs_is_a_clear_error():
    with pytest.raises(ValueError, match="encoder_outputs"):
        DecoderLayer(**SMALL)(tf.zeros((1, 2, 16)))


def test_transformer_decoder_cache_matches_full_pass():
    decoder = TransformerDecoder(num_layers=2, target_vocab_size=30, maximum_position_encoding=16,
                                 dropout_rate=0.0, **SMALL)
    memory = tf.random.normal((2, 5, 16))
    source_mask = tf.constant([[True] * 5, [True] * 3 + [False] * 2])
    ids = tf.constant([[2, 7, 8, 9], [2, 4, 5, 6]])
    full = decoder(ids, memory, encoder_padding_mask=source_mask)
    cache = decoder.init_cache(2, 4)
    assert len(cache) == 2 and cache[0].shape == (2, 2, 4, 4, 4)  # L × (B, 2, H, T_max, Dh)
    for t in range(4):
        step, cache = decoder.call_with_cache(ids[:, t:t + 1], cache, t, memory,
                                              encoder_padding_mask=source_mask)
        np.testing.assert_allclose(step.numpy()[:, 0], full.numpy()[:, t], atol=1e-5)


def test_sequence_longer_than_max_length_is_rejected():
    embedding = TokenAndPositionEmbedding(vocab_size=10, d_model=4, max_length=3)
    with pytest.raises(ValueError, match="max_length"):
        embedding(tf.zeros((1, 4), tf.int32))


LAYERS = [
    lambda: MultiHeadAttention(16, 4, dropout=0.1, rotary_max_wavelength=500.0),
    lambda: FeedForward(16, 32, activation="gelu", dropout=0.2, use_bias=False),
    lambda: PositionalEncoding(16, 100),
    lambda: PositionEmbedding(100, 16),
    lambda: TokenAndPositionEmbedding(30, 16, 20, position_encoding="sinusoidal",
                                      scale_embeddings=True),
    lambda: EncoderLayer(**SMALL, dropout=0.1, norm_placement="pre", activation="gelu"),
    lambda: DecoderLayer(**SMALL, use_cross_attention=False, norm_placement="pre"),
    lambda: TransformerEncoder(2, input_vocab_size=30, maximum_position_encoding=20, **SMALL),
    lambda: TransformerDecoder(2, target_vocab_size=30, maximum_position_encoding=20, **SMALL),
]


@pytest.mark.parametrize("make", LAYERS)
def test_config_round_trips_through_keras_serialization(make):
    layer = make()
    config = layer.get_config()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer)
    assert clone.get_config() == config


@pytest.mark.parametrize("make, name", [
    (lambda: FeedForward(16, 0), "dff"),
    (lambda: FeedForward(16, 8, activation="swish"), "activation"),
    (lambda: EncoderLayer(d_model=10, num_heads=4, dff=8), "d_model"),
    (lambda: EncoderLayer(**SMALL, norm_placement="middle"), "norm_placement"),
    (lambda: DecoderLayer(**SMALL, dropout=1.5), "dropout"),
    (lambda: PositionalEncoding(16, max_length=0), "max_length"),
    (lambda: TokenAndPositionEmbedding(10, 4, 8, position_encoding="alibi"),
     "position_encoding"),
    (lambda: TransformerEncoder(0, input_vocab_size=30, **SMALL), "num_layers"),
])
def test_bad_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name) as error:
        make()
    assert "Received" in str(error.value)
