"""`TransformerClassifier`: pooling against NumPy, padding changes nothing, save -> load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from llm_tf.config import ModelConfig
from llm_tf.fine_tuning.pretrained import copy_stack_weights
from llm_tf.models import TransformerClassifier, TransformerLM
from llm_tf.models.classifier import pool

CONFIG = ModelConfig(vocab_size=40, d_model=32, num_heads=2, num_layers=2, dff=64,
                     max_length=16, dropout=0.0)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooling_reads_the_real_tokens_only(pooling):
    hidden = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    got = pool(tf.constant(hidden), tf.constant(mask), pooling).numpy()
    if pooling == "last":
        expected = np.stack([hidden[0, 2], hidden[1, 4], hidden[2, 0]])
    else:
        expected = np.stack([hidden[0, :3].mean(0), hidden[1].mean(0), np.zeros(4)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_right_padding_does_not_change_the_logits(pooling):
    model = TransformerClassifier(CONFIG, 3, pooling=pooling)
    text = [7, 8, 9, 10]
    short = model(tf.constant([text])).numpy()
    padded = model(tf.constant([text + [0] * 6, [11] * 10])).numpy()[:1]
    np.testing.assert_allclose(padded, short, atol=1e-5)
    assert short.shape == (1, 3) and short.dtype == np.float32


def test_last_token_pooling_is_the_language_models_last_hidden_state():
    lm = TransformerLM(CONFIG)
    lm.build((None, 16))
    model = TransformerClassifier(CONFIG, 2)
    model.build((None, 16))
    assert copy_stack_weights(lm.decoder, model.decoder) == len(lm.decoder.weights)
    ids = tf.constant([[5, 6, 7, 8, 9]])
    np.testing.assert_allclose(model.features(ids).numpy(),
                               lm.decoder(ids).numpy()[:, -1], atol=1e-6)


def test_config_round_trip_and_weights_save_load(tmp_path):
    model = TransformerClassifier(CONFIG, 4, pooling="mean")
    ids = tf.constant([[5, 6, 7, 0], [8, 9, 10, 11]])
    logits = model(ids).numpy()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert (clone.num_classes, clone.pooling, clone.config) == (4, "mean", CONFIG)
    path = str(tmp_path / "classifier.weights.h5")
    model.save_weights(path)
    clone.load_weights(path)
    np.testing.assert_allclose(clone(ids).numpy(), logits, atol=1e-6)
    other = TransformerClassifier(CONFIG.replace(num_layers=1), 4)
    with pytest.raises(ValueError, match="num_layers: expected 1, found 2"):
        other.load_weights(path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=1), "`num_classes` must be at least 2"),
    (dict(num_classes=2, pooling="max"), "`pooling` must be one of 'last', 'mean'"),
    (dict(num_classes="two"), "`num_classes` must be a positive integer"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerClassifier(CONFIG, **kwargs)
