"""LoRA (llm_tf/layers/lora.py): the paper's update, what trains, merging, and the methods."""

import numpy as np
import pytest
import tensorflow as tf

from llm_tf.config import FinetuneConfig, ModelConfig
from llm_tf.fine_tuning.methods import apply_method
from llm_tf.layers.lora import count_parameters, enable_lora, lora_layers
from llm_tf.models import TransformerClassifier, TransformerLM

CONFIG = ModelConfig(vocab_size=40, d_model=32, num_heads=2, num_layers=2, dff=64,
                     max_length=16, dropout=0.0)
IDS = tf.constant([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]])


def classifier(num_classes=3):
    model = TransformerClassifier(CONFIG, num_classes)
    model.build((None, CONFIG.max_length))
    return model


def randomize_adapters(model, seed=0):
    rng = np.random.default_rng(seed)
    for dense in lora_layers(model.decoder):
        dense.lora_kernel_b.assign(rng.normal(0, 0.5, dense.lora_kernel_b.shape))


def test_adapters_start_at_zero_and_compute_x_w_plus_scaled_x_a_b():
    model = classifier()
    before = model(IDS).numpy()
    adapted = enable_lora(model.decoder, rank=4, alpha=8.0, targets=("query", "value"))
    assert len(adapted) == 2 * CONFIG.num_layers
    np.testing.assert_allclose(model(IDS).numpy(), before, atol=1e-6)  # B = 0: unchanged
    randomize_adapters(model)
    dense = adapted[0]
    x = np.random.default_rng(1).normal(size=(3, CONFIG.d_model)).astype(np.float32)
    w, b = dense._kernel.numpy(), dense.bias.numpy()
    a, b_lora = dense.lora_kernel_a.numpy(), dense.lora_kernel_b.numpy()
    expected = x @ w + (8.0 / 4) * (x @ a) @ b_lora + b  # Hu et al. 2021, eq. (3)
    np.testing.assert_allclose(dense(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert a.shape == (CONFIG.d_model, 4) and b_lora.shape == (4, CONFIG.d_model)
    assert np.abs(model(IDS).numpy() - before).max() > 1e-3


def test_only_adapters_and_the_head_train_and_their_count_is_r_times_d_in_plus_d_out():
    model = classifier(num_classes=3)
    apply_method(model, FinetuneConfig(from_run="x", method="lora", lora_rank=4,
                                       lora_targets="query,value,key"))
    names = {v.path.split("/")[-1] for v in model.trainable_variables}
    assert names == {"lora_kernel_a", "lora_kernel_b", "kernel", "bias"}
    assert all(v.path.split("/")[-2] == "head" for v in model.trainable_variables
               if not v.path.split("/")[-1].startswith("lora"))
    D = CONFIG.d_model
    adapters = CONFIG.num_layers * 3 * 4 * (D + D)
    head = D * 3 + 3
    assert count_parameters(model.trainable_variables) == adapters + head


def test_frozen_trains_the_head_only_and_a_language_model_has_none():
    model = classifier()
    apply_method(model, FinetuneConfig(from_run="x", method="frozen"))
    assert [v.path.split("/")[-2] for v in model.trainable_variables] == ["head", "head"]
    lm = TransformerLM(CONFIG)
    lm.build((None, 16))
    with pytest.raises(ValueError, match="no head to train"):
        apply_method(lm, FinetuneConfig(from_run="x", method="frozen"))
    apply_method(lm, FinetuneConfig(from_run="x", method="lora"))  # tied embeddings frozen
    assert {v.path.split("/")[-1] for v in lm.trainable_variables} == {"lora_kernel_a",
                                                                      "lora_kernel_b"}


def test_saved_weights_are_merged_and_a_plain_model_gives_the_same_outputs(tmp_path):
    model = classifier()
    enable_lora(model.decoder, rank=2, alpha=16.0, targets=("query", "value",
                                                             "attention_output"))
    randomize_adapters(model)
    unmerged = model(IDS).numpy()
    path = str(tmp_path / "merged.weights.h5")
    model.save_weights(path)
    plain = classifier()
    plain.load_weights(path)  # no adapter variables in the file: a plain model's weights
    np.testing.assert_allclose(plain(IDS).numpy(), unmerged, atol=1e-5)
    assert not lora_layers(plain.decoder)
    assert len(plain.weights) == len(classifier().weights)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rank=0, alpha=1.0), "`rank` must be a positive integer"),
    (dict(rank=2, alpha=0), "`alpha` must be a positive number"),
    (dict(rank=2, alpha=1.0, targets=("queries",)), "`targets` must be names from"),
])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        enable_lora(classifier().decoder, **kwargs)


@pytest.mark.parametrize("field, value, message", [
    ("method", "adapters", "`method` must be one of 'full', 'frozen', 'lora'"),
    ("lora_targets", "query,query", "`lora_targets` must be distinct names"),
    ("lora_targets", "q", "`lora_targets` must be distinct names"),
    ("pooling", "max", "`pooling` must be one of 'last', 'mean'"),
    ("prompt_template", "no placeholder", r"`prompt_template` must be a text holding"),
    ("labels", ("a", "a"), "`labels` must be distinct"),
])
def test_finetune_config_validates(field, value, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(from_run="x", **{field: value})
