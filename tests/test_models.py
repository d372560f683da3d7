"""TransformerLM and Transformer: presets, causality, cache = full pass, save/load, training,
XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import llm_tf
from llm_tf import ModelConfig
from llm_tf.models import Transformer, TransformerLM

TINY = ModelConfig(vocab_size=40, d_model=32, num_heads=4, num_layers=2, dff=64, max_length=16,
                   dropout=0.0)
VARIANTS = {
    "learned-pre": TINY,
    "sinusoidal-post": TINY.replace(position_encoding="sinusoidal", norm_placement="post",
                                    scale_embeddings=True, activation="relu"),
    "rope-untied": TINY.replace(position_encoding="rope", tie_embeddings=False, use_bias=False),
}


def random_ids(shape, vocab=40, seed=0):
    return tf.random.stateless_uniform(shape, (seed, 1), 4, vocab, dtype=tf.int32)


def test_public_api():
    assert llm_tf.ModelConfig is ModelConfig
    assert llm_tf.TransformerLM is TransformerLM
    model = TransformerLM(TINY)
    logits = model(random_ids((3, 7)))
    assert logits.shape == (3, 7, 40) and logits.dtype == tf.float32


@pytest.mark.parametrize("name, expected", [
    ("seed", dict(vocab_size=10000, d_model=512, num_heads=8, num_layers=6, dff=2048)),
    ("tiny", dict(d_model=128, num_heads=4, num_layers=4, dff=512, max_length=64)),
    ("small", dict(d_model=384, num_heads=6, num_layers=6, max_length=256)),
])
def test_presets_match_their_sources(name, expected):
    config = llm_tf.get_preset(name).model
    assert {k: getattr(config, k) for k in expected} == expected


def test_tiny_preset_has_nanogpts_parameter_count():
    # nanoGPT's baby GPT: 0.80 M parameters with a 65-character vocabulary.
    model = TransformerLM.from_preset("tiny", vocab_size=65)
    model.build()
    assert abs(model.count_params() - 0.80e6) < 0.01e6


def test_from_preset_applies_overrides_and_rejects_unknown_fields():
    model = TransformerLM.from_preset("tiny", num_layers=2, vocab_size=50)
    assert model.config.num_layers == 2 and len(model.decoder.blocks) == 2
    with pytest.raises(ValueError, match="num_layer"):
        TransformerLM.from_preset("tiny", num_layer=2)
    with pytest.raises(ValueError, match="Unknown preset 'tinny'.*'tiny'"):
        TransformerLM.from_preset("tinny")


@pytest.mark.parametrize("variant", VARIANTS)
def test_changing_later_tokens_leaves_earlier_logits_unchanged(variant):
    model = TransformerLM(VARIANTS[variant])
    ids = random_ids((2, 12))
    changed = tf.concat([ids[:, :5], random_ids((2, 7), seed=9)], axis=1)
    np.testing.assert_allclose(model(changed).numpy()[:, :5], model(ids).numpy()[:, :5],
                               atol=1e-6)
    assert not np.allclose(model(changed).numpy()[:, 5:], model(ids).numpy()[:, 5:], atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decoding_equals_full_forward_step_by_step(variant):
    model = TransformerLM(VARIANTS[variant])
    ids = random_ids((2, 10))
    full = model(ids).numpy()
    cache = model.init_cache(2)
    logits, cache = model.call_with_cache(ids[:, :4], cache, 0)  # prefill 4 tokens
    np.testing.assert_allclose(logits.numpy(), full[:, :4], atol=1e-5)
    for t in range(4, 10):
        logits, cache = model.call_with_cache(ids[:, t:t + 1], cache, t)
        np.testing.assert_allclose(logits.numpy()[:, 0], full[:, t], atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_left_padding_with_per_row_positions_matches_unpadded(variant):
    """How batched prompts of different lengths are run: pad on the left, mask the pads,
    and give each row positions that start at 0 on its first real token."""
    model = TransformerLM(VARIANTS[variant])
    short = random_ids((1, 3), seed=3)
    padded = tf.concat([tf.zeros((1, 2), tf.int32), short], axis=1)
    mask = tf.constant([[False, False, True, True, True]])
    positions = tf.constant([[0, 0, 0, 1, 2]])
    expected = model(short).numpy()
    got = model(padded, padding_mask=mask, positions=positions).numpy()[:, 2:]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    cache_mask = tf.concat([mask, tf.ones((1, 11), tf.bool)], axis=1)  # over T_max = 16 slots
    logits, _ = model.call_with_cache(padded, model.init_cache(1), 0, padding_mask=cache_mask,
                                      positions=positions)
    np.testing.assert_allclose(logits.numpy()[:, 2:], expected, atol=1e-5)


def test_sequence_longer_than_max_length_is_rejected_at_call():
    with pytest.raises(ValueError, match="max_length"):
        TransformerLM(TINY)(random_ids((1, 17)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_keras_and_weights_h5_round_trips_give_identical_outputs(variant, tmp_path):
    model = TransformerLM(VARIANTS[variant])
    ids = random_ids((2, 9))
    expected = model(ids).numpy()

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, TransformerLM) and reloaded.config == model.config
    np.testing.assert_array_equal(reloaded(ids).numpy(), expected)

    model.save_weights(tmp_path / "model.weights.h5")
    fresh = TransformerLM(VARIANTS[variant])
    fresh.build()
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(fresh(ids).numpy(), expected)


def test_mixed_bfloat16_computes_in_bfloat16_and_returns_float32_logits():
    model = TransformerLM(TINY, dtype="mixed_bfloat16")
    logits = model(random_ids((2, 5)))
    assert logits.dtype == tf.float32
    assert model.decoder.blocks[0].feed_forward.hidden_dense.compute_dtype == "bfloat16"
    assert model.decoder.blocks[0].feed_forward.hidden_dense.kernel.dtype == "float32"
    assert all(layer.dtype == tf.bfloat16 for layer in model.init_cache(1))
    reference = TransformerLM(TINY)
    reference.build()
    model.build()
    reference.set_weights(model.get_weights())
    ids = random_ids((2, 5))
    np.testing.assert_allclose(model(ids).numpy(), reference(ids).numpy(), atol=0.1)


def sparse_ce(targets, logits):
    return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
        targets, logits, from_logits=True))


def make_train_step(model, optimizer, jit_compile=False):
    @tf.function(jit_compile=jit_compile)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = sparse_ce(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss
    return train_step


def test_a_few_steps_drive_the_loss_on_a_fixed_batch_close_to_zero():
    keras.utils.set_random_seed(0)
    model = TransformerLM(TINY)
    optimizer = keras.optimizers.Adam(3e-3)
    ids = random_ids((4, 13))
    x, y = ids[:, :-1], ids[:, 1:]
    step = make_train_step(model, optimizer)
    first = float(step(x, y))
    for _ in range(150):
        loss = float(step(x, y))
    assert first > 3.0 and loss < 0.05


def test_forward_and_train_step_compile_with_xla():
    model = TransformerLM(VARIANTS["rope-untied"].replace(dropout=0.1))
    ids = random_ids((2, 12))
    forward = tf.function(lambda x: model(x), jit_compile=True)
    np.testing.assert_allclose(forward(ids).numpy(), model(ids).numpy(), atol=1e-5)
    optimizer = keras.optimizers.AdamW(1e-3)
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, jit_compile=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    loss = step(ids[:, :-1], ids[:, 1:])
    assert np.isfinite(loss.numpy())
    assert any(not np.allclose(b, v.numpy()) for b, v in zip(before, model.trainable_variables))


def test_cached_decode_step_compiles_with_xla():
    model = TransformerLM(TINY)
    ids = random_ids((2, 6))

    @tf.function(jit_compile=True)
    def step(token, cache, index):
        return model.call_with_cache(token, cache, index)

    cache = model.init_cache(2)
    for t in range(6):
        logits, cache = step(ids[:, t:t + 1], cache, tf.constant(t))
    np.testing.assert_allclose(logits.numpy()[:, 0], model(ids).numpy()[:, -1], atol=1e-5)


def test_config_must_be_a_model_config():
    with pytest.raises(ValueError, match="bogus"):
        TransformerLM({"d_model": 8, "bogus": 1})
    with pytest.raises(ValueError, match="config"):
        TransformerLM(42)


# -- the encoder-decoder Transformer ------------------------------------------

def make_transformer():
    return Transformer(num_layers=2, d_model=16, num_heads=4, dff=32, input_vocab_size=30,
                       target_vocab_size=25, maximum_position_encoding=20, dropout_rate=0.0)


def test_transformer_shapes_and_source_padding_invariance():
    model = make_transformer()
    source = tf.constant([[5, 6, 7, 0, 0]])
    target = tf.constant([[2, 9, 10]])
    logits = model((source, target))
    assert logits.shape == (1, 3, 25) and logits.dtype == tf.float32
    np.testing.assert_allclose(model((source[:, :3], target)).numpy(), logits.numpy(),
                               atol=1e-5)


def test_transformer_cached_decode_equals_full_pass_and_saves(tmp_path):
    model = make_transformer()
    source = tf.constant([[5, 6, 7, 0], [8, 9, 0, 0]])
    target = tf.constant([[2, 4, 5, 6], [2, 7, 8, 9]])
    full = model((source, target)).numpy()
    memory, source_mask = model.encode(source)
    cache = model.init_cache(2, max_length=4)
    for t in range(4):
        logits, cache = model.decode_with_cache(target[:, t:t + 1], cache, t, memory,
                                                source_mask)
        np.testing.assert_allclose(logits.numpy()[:, 0], full[:, t], atol=1e-5)
    model.save(tmp_path / "transformer.keras")
    reloaded = keras.saving.load_model(tmp_path / "transformer.keras")
    np.testing.assert_array_equal(reloaded((source, target)).numpy(), full)


def test_transformer_encode_decode_before_call_then_save(tmp_path):
    model = make_transformer()
    source, target = tf.constant([[5, 6, 7]]), tf.constant([[2, 4]])
    memory, source_mask = model.encode(source)
    logits = model.decode(target, memory, source_mask)
    np.testing.assert_allclose(model((source, target)).numpy(), logits.numpy(), atol=1e-6)
    model.save_weights(tmp_path / "t.weights.h5")
    fresh = make_transformer()
    fresh.build()
    fresh.load_weights(tmp_path / "t.weights.h5")
    np.testing.assert_array_equal(fresh((source, target)).numpy(), logits.numpy())


def test_transformer_cache_longer_than_its_positions_is_rejected():
    with pytest.raises(ValueError, match="max_length"):
        make_transformer().init_cache(1, max_length=21)


def test_keras_weights_api_names_the_differing_field(tmp_path):
    """The document's way — rebuild the model by hand, then `load_weights` — must not
    silently load a 2-layer file into a 1-layer model (plain Keras does)."""
    TransformerLM(TINY).save_weights(tmp_path / "lm.weights.h5")
    other = TransformerLM(TINY.replace(num_layers=1))
    with pytest.raises(ValueError, match="num_layers: expected 1, found 2"):
        other.load_weights(tmp_path / "lm.weights.h5")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        TransformerLM(TINY).save_weights(tmp_path / "encoder_weights.h5")
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        TransformerLM(TINY).load_weights(tmp_path / "missing.weights.h5")
