"""Configs validate themselves, round-trip through JSON, and presets name all three parts."""

import json
import subprocess
import sys

import pytest

from llm_tf.config import (
    PRESETS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    differences,
    format_differences,
    get_preset,
    model_config_from_preset,
)


@pytest.mark.parametrize("kwargs, name", [
    (dict(d_model=100, num_heads=3), "d_model"),
    (dict(num_heads=0), "num_heads"),
    (dict(num_layers=-1), "num_layers"),
    (dict(dff=0), "dff"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(max_length=0), "max_length"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.5), "dropout"),
    (dict(norm_placement="sandwich"), "norm_placement"),
    (dict(position_encoding="alibi"), "position_encoding"),
    (dict(activation="tanh"), "activation"),
    (dict(d_model=24, num_heads=8, position_encoding="rope"), "head width"),
    (dict(num_layers=2.5), "num_layers"),
])
def test_model_config_rejects_bad_values_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name) as error:
        ModelConfig(**kwargs)
    assert "Received" in str(error.value)
    if len(kwargs) == 1:
        assert f"{name}={list(kwargs.values())[0]!r}" in str(error.value)


@pytest.mark.parametrize("cls, kwargs, name", [
    (DataConfig, dict(tokenizer="bpe"), "tokenizer"),
    (DataConfig, dict(context_length=0), "context_length"),
    (DataConfig, dict(val_fraction=1.0), "val_fraction"),
    (TrainConfig, dict(steps=0), "steps"),
    (TrainConfig, dict(learning_rate=-1e-3), "learning_rate"),
    (TrainConfig, dict(beta2=1.0), "beta2"),
    (TrainConfig, dict(schedule="linear"), "schedule"),
    (TrainConfig, dict(precision="float8"), "precision"),
    (TrainConfig, dict(schedule="noam", warmup_steps=0), "warmup_steps"),
])
def test_data_and_train_configs_validate(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [ModelConfig, DataConfig, TrainConfig])
def test_round_trip_through_json(cls):
    config = cls()
    assert cls.from_dict(json.loads(config.to_json())) == config


def test_unknown_field_names_close_matches():
    with pytest.raises(ValueError, match="'num_head'.*num_heads"):
        ModelConfig.from_dict({"num_head": 4})


def test_every_preset_names_model_data_and_training():
    assert set(PRESETS) >= {"seed", "tiny", "small"}
    for preset in PRESETS.values():
        assert preset.data.context_length <= preset.model.max_length
    tiny = get_preset("tiny")  # nanoGPT's CPU run (its README and train_shakespeare_char.py)
    assert (tiny.data.batch_size, tiny.data.context_length, tiny.train.steps) == (12, 64, 2000)
    assert (tiny.train.learning_rate, tiny.train.min_learning_rate, tiny.train.warmup_steps,
            tiny.train.beta2, tiny.train.weight_decay, tiny.train.clip_norm,
            tiny.model.dropout) == (1e-3, 1e-4, 100, 0.99, 0.1, 1.0, 0.0)


def test_model_config_from_preset_and_difference():
    config = model_config_from_preset("tiny", num_layers=2)
    assert config.num_layers == 2 and config.d_model == 128
    found = differences(get_preset("tiny").model, config)
    assert [(d.field, d.first, d.second) for d in found] == [("num_layers", 4, 2)]
    assert format_differences(found) == "num_layers: expected 4, found 2"
    assert differences(config, config.replace(dropout=0.5), ignore=("dropout",)) == []


def test_configs_import_without_tensorflow():
    code = "import sys, llm_tf; llm_tf.ModelConfig(); assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_exposes_its_modules_lazily():
    import llm_tf

    assert llm_tf.data.build_lm_data and llm_tf.tokenizers.load_tokenizer
    assert llm_tf.load is llm_tf.saving.load
    assert llm_tf.layers.MultiHeadAttention and llm_tf.models.TransformerLM
    assert llm_tf.Generator is llm_tf.generation.Generator
    assert llm_tf.export_run is llm_tf.export.export_run
