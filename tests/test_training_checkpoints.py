"""Checkpoints (last K + best, everything restored) and the run-directory rules."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_util import random_batches, tiny_configs

from llm_tf.models import TransformerLM
from llm_tf.rundir import RunConfig, RunDir, RunDirectoryError
from llm_tf.training.checkpoints import Checkpoints
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.step import TrainStep


def make_state(directory, seed, dropout=0.1, keep=2):
    model_config, _, train = tiny_configs()
    keras.utils.set_random_seed(seed)
    model = TransformerLM(model_config.replace(dropout=dropout))
    model.build((None, 32))
    optimizer = make_optimizer(train, model.trainable_variables, 32)
    step = TrainStep(model, optimizer, tf.distribute.get_strategy())
    return step, Checkpoints(directory, model, optimizer, step.step, keep=keep)


def test_keeps_the_last_k_and_the_best_by_validation_loss(tmp_path):
    step, checkpoints = make_state(tmp_path / "checkpoints", seed=0)
    batches = iter(random_batches(64))
    for val_loss in (3.0, 2.0, 2.5, 2.2):
        step(batches)
        checkpoints.save(val_loss)
    names = sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index"))
    assert names == ["ckpt-3.index", "ckpt-4.index"]
    assert checkpoints.best_path.endswith("best-2")
    assert float(checkpoints.best_val_loss.numpy()) == 2.0
    assert RunDir(tmp_path).has_checkpoint()


def test_restore_brings_back_weights_optimizer_step_and_dropout_rng(tmp_path):
    step, checkpoints = make_state(tmp_path / "checkpoints", seed=0)
    batches = iter(random_batches(64))
    for _ in range(3):
        step(batches)
    checkpoints.save(1.0)
    saved = [v.numpy() for v in step.model.variables] + \
            [v.numpy() for v in step.optimizer.variables]
    seed_states = [v for v in step.model.non_trainable_variables if "seed_generator" in v.path]
    assert seed_states and all(v.numpy()[1] > 0 for v in seed_states)  # dropout drew masks

    fresh, fresh_checkpoints = make_state(tmp_path / "checkpoints", seed=1)
    assert fresh_checkpoints.restore() == 3
    restored = [v.numpy() for v in fresh.model.variables] + \
               [v.numpy() for v in fresh.optimizer.variables]
    assert len(restored) == len(saved)
    for a, b in zip(saved, restored):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 3
    assert float(fresh_checkpoints.best_val_loss.numpy()) == 1.0


def test_restoring_another_models_checkpoint_fails(tmp_path):
    step, checkpoints = make_state(tmp_path / "checkpoints", seed=0)
    checkpoints.save()
    model_config, _, train = tiny_configs()
    other = TransformerLM(model_config.replace(num_layers=1))
    other.build((None, 32))
    optimizer = make_optimizer(train, other.trainable_variables, 32)
    with pytest.raises(ValueError, match="does not fit this model"):
        Checkpoints(tmp_path / "checkpoints", other, optimizer,
                    TrainStep(other, optimizer, tf.distribute.get_strategy()).step).restore()


def test_new_run_directory_rules(tmp_path):
    RunDir.create(tmp_path / "new")  # absent: created
    assert (tmp_path / "new").is_dir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="is not empty"):
        RunDir.create(tmp_path / "other")
    with pytest.raises(RunDirectoryError, match="holds no llm_tf run"):
        RunDir.create(tmp_path / "other", overwrite=True)
    run = tmp_path / "run"
    RunDir(run).write_config(RunConfig(tiny_configs()[0]))
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "keep.txt").write_text("not ours")
    with pytest.raises(RunDirectoryError, match="holds a run.*--resume.*--overwrite"):
        RunDir.create(run)
    RunDir.create(run, overwrite=True)
    assert sorted(os.listdir(run)) == ["keep.txt"]  # only the run's own files are removed


def test_resume_rules_name_the_differing_fields(tmp_path):
    with pytest.raises(RunDirectoryError, match="nothing to resume"):
        RunDir.resume(tmp_path / "absent")
    model_config = tiny_configs()[0]
    RunDir(tmp_path).write_config(RunConfig(model_config))
    with pytest.raises(RunDirectoryError, match="no checkpoint"):
        RunDir.resume(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    (tmp_path / "checkpoints" / "ckpt-2.index").write_text("")
    assert RunDir.resume(tmp_path).read_config().model == model_config
    # The vocabulary follows the run's tokenizer, so it is not compared.
    RunDir.resume(tmp_path, model_config.replace(vocab_size=1000))
    with pytest.raises(RunDirectoryError,
                       match=r"d_model: saved 32, asked for 64; dff: saved 64, asked for 128"):
        RunDir.resume(tmp_path, model_config.replace(d_model=64, dff=128))


def test_unwritable_run_directory_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunDirectoryError, match="not writable"):
        RunDir(blocker / "run").check_writable()
    if os.geteuid() != 0:  # root writes through permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(RunDirectoryError, match="not writable"):
            RunDir(locked / "run").check_writable()
