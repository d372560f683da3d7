"""The run directory: save_run -> load rebuilds the same model; clear errors otherwise."""

import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from llm_tf import saving, weights
from llm_tf.config import ModelConfig
from llm_tf.models import TransformerLM
from llm_tf.tokenizers import train_tokenizer

BASE = dict(vocab_size=30, d_model=32, num_heads=4, num_layers=2, dff=64, max_length=16,
            dropout=0.0)
IDS = tf.constant([[4, 5, 6, 7, 8], [9, 10, 11, 12, 13]])


def make_model(**changes):
    model = TransformerLM(ModelConfig(**{**BASE, **changes}))
    model.build()
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("char", "abcdefghijklmnopqrstuvwxyz")


@pytest.fixture
def run_dir(tmp_path, tokenizer):
    tf.keras.utils.set_random_seed(3)
    model = make_model()
    saving.save_run(tmp_path / "run", model, tokenizer)
    return tmp_path / "run", model


def test_load_rebuilds_model_and_tokenizer_from_the_directory_alone(run_dir, tokenizer):
    path, model = run_dir
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.weights.h5",
                                                      "tokenizer"]
    run = saving.load(path)
    assert run.config.model == model.config
    np.testing.assert_array_equal(run.model(IDS).numpy(), model(IDS).numpy())
    assert run.tokenizer.decode(run.tokenizer.encode("hello")).numpy() == \
        tokenizer.decode(tokenizer.encode("hello")).numpy() == b"hello"


def test_weights_file_carries_its_config(run_dir):
    path, model = run_dir
    with h5py.File(path / "model.weights.h5", "r") as f:
        stamped = json.loads(f.attrs[weights.CONFIG_ATTRIBUTE])
    assert ModelConfig.from_dict(stamped) == model.config


@pytest.mark.parametrize("field, value, saved", [
    ("num_layers", 1, 2),  # Keras alone would load 1 of the 2 layers silently
    ("num_heads", 8, 4),  # same shapes: Keras alone would load it silently
    ("position_encoding", "rope", "learned"),  # Keras alone: silently, positions dropped
    ("vocab_size", 31, 30),
    ("d_model", 64, 32),
])
def test_weights_of_another_config_name_the_field(run_dir, field, value, saved):
    path, _ = run_dir
    other = make_model(**{field: value})
    with pytest.raises(ValueError, match=f"another model configuration: {field}: expected "
                                         f"{value!r}, found {saved!r}"):
        saving.load_weights(other, path / "model.weights.h5")


def test_config_json_that_disagrees_with_the_weights_names_the_field(run_dir):
    path, _ = run_dir
    config = json.loads((path / "config.json").read_text())
    config["model"]["dff"] = 128
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="dff: expected 128, found 64"):
        saving.load(path)


def test_dropout_may_differ_between_saving_and_loading(run_dir):
    path, model = run_dir
    other = make_model(dropout=0.2)
    saving.load_weights(other, path / "model.weights.h5")
    np.testing.assert_array_equal(other(IDS).numpy(), model(IDS).numpy())


def test_weights_without_a_stamp_are_checked_by_shape(tmp_path):
    model = make_model()
    # Keras' own save_weights (as any other program would write it): no config inside.
    keras.Model.save_weights(model, tmp_path / "plain.weights.h5")
    with pytest.raises(ValueError, match=r"do not fit this model.*\(31, 32\).*\(30, 32\)"):
        saving.load_weights(make_model(vocab_size=31), tmp_path / "plain.weights.h5")
    with pytest.raises(ValueError, match="the file holds 36 arrays, the model 20"):
        saving.load_weights(make_model(num_layers=1), tmp_path / "plain.weights.h5")
    fresh = make_model()
    saving.load_weights(fresh, tmp_path / "plain.weights.h5")
    np.testing.assert_array_equal(fresh(IDS).numpy(), model(IDS).numpy())


def test_load_with_an_expected_config_names_the_difference(run_dir):
    path, _ = run_dir
    with pytest.raises(ValueError, match="max_length: expected 32, found 16"):
        saving.load(path, model_config=ModelConfig(**{**BASE, "max_length": 32}))


def test_missing_run_directory_config_or_weights_are_clear_errors(run_dir, tmp_path):
    path, _ = run_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        saving.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not an llm_tf run directory"):
        saving.load(tmp_path / "empty")
    (path / "model.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match="model.weights.h5' does not exist"):
        saving.load(path)


def test_the_design_documents_weights_name_points_to_weights_h5(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match=r"must end in '\.weights\.h5'.*encoder\.weights\.h5"):
        saving.save_weights(model, tmp_path / "encoder_weights.h5")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        saving.load_weights(model, tmp_path / "encoder_weights.h5")


def test_a_whole_model_keras_file_round_trips(tmp_path):
    import keras

    model = make_model()
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert reloaded.config == model.config
    np.testing.assert_array_equal(reloaded(IDS).numpy(), model(IDS).numpy())


def test_saving_replaces_weights_atomically(run_dir, tokenizer):
    path, _ = run_dir
    tf.keras.utils.set_random_seed(4)
    newer = make_model()
    saving.save_run(path, newer, tokenizer)
    assert not list(path.glob("*.tmp.weights.h5"))
    np.testing.assert_array_equal(saving.load(path).model(IDS).numpy(), newer(IDS).numpy())


LEGACY_RUN = Path(__file__).parent / "data" / "legacy_tiny_run"


def test_a_run_directory_written_before_the_layers_moved_still_loads():
    # tests/data/legacy_tiny_run: the `tiny` preset after 40 steps, saved when the model's
    # layers sat at the top of the weights file (embedding/, blocks/, final_norm/), with
    # the logits and greedy tokens that code computed.
    with h5py.File(LEGACY_RUN / "model.weights.h5", "r") as f:
        assert {"embedding", "blocks", "final_norm"} <= set(f) and "decoder" not in f
    expected = np.load(LEGACY_RUN / "expected_logits.npz")
    run = saving.load(LEGACY_RUN)
    np.testing.assert_allclose(run.model(expected["token_ids"]).numpy(), expected["logits"],
                               atol=1e-6, rtol=0)
    from llm_tf.generation import Generator

    prompt = [int(i) for i in expected["token_ids"][0][:10]]
    assert Generator(run.model, run.tokenizer).generate_ids([prompt], 20)[0] == \
        expected["greedy"].tolist()
