"""Exact resume across processes, and a real `kill -9` in the middle of a run."""

import json
import random
import signal
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf
from training_util import TINY_CLI, popen_python, run_python, write_corpus

from llm_tf.rundir import RunDir
from llm_tf.training.reporting import read_metrics

# op determinism must be on before any op runs: a fresh process per run.
DETERMINISTIC_CLI = ("import sys, tensorflow as tf\n"
                     "tf.config.experimental.enable_op_determinism()\n"
                     "from llm_tf.commands.train import main\n"
                     "sys.exit(main(sys.argv[1:]))\n")


def weights_of(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def finish(process):
    out, err = process.communicate()
    assert process.returncode == 0, f"{out}\n{err}"
    return out


@pytest.mark.slow
def test_n_steps_straight_equal_k_steps_then_resume(tmp_path):
    corpus = write_corpus(tmp_path / "text.txt")
    common = ["-c", DETERMINISTIC_CLI, "--data", corpus, *TINY_CLI, "--dropout=0.1",
              "--steps=8", "--eval_interval=2", "--no-export"]
    straight = popen_python([*common, "--run-dir", str(tmp_path / "straight")])
    first = popen_python([*common, "--run-dir", str(tmp_path / "split"), "--stop-at", "4"])
    assert "paused: step 4" in finish(first)
    resumed = run_python([*common, "--run-dir", str(tmp_path / "split"), "--resume"]).stdout
    finish(straight)
    assert "resuming at step 4" in resumed

    def metrics(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: json.loads(line)[k] for k in ("step", "train_loss", "val_loss", "lr")}
                for line in lines]

    assert [m["step"] for m in metrics("straight")] == [2, 4, 6, 8]
    assert metrics("split") == metrics("straight")  # bit for bit, dropout included
    a = weights_of(tmp_path / "straight" / "model.weights.h5")
    b = weights_of(tmp_path / "split" / "model.weights.h5")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def latest_step(run_dir):
    """Step of the newest complete checkpoint, from the index file (None if none yet)."""
    path = tf.train.latest_checkpoint(RunDir(run_dir).checkpoint_dir)
    return None if path is None else int(path.rsplit("-", 1)[1])


@pytest.mark.slow
def test_kill_9_mid_run_loses_only_steps_since_the_last_checkpoint(tmp_path):
    corpus = write_corpus(tmp_path / "text.txt")
    run_dir = tmp_path / "run"
    args = ["-m", "llm_tf.train", "--data", corpus, *TINY_CLI, "--steps=100000",
            "--eval_interval=3", "--keep_checkpoints=2", "--no-export", "--run-dir", str(run_dir)]
    victim = popen_python(args)
    try:
        while (latest_step(run_dir) or 0) < 6:  # a few checkpoints written, more being written
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.3))
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL

    step = latest_step(run_dir)
    assert step % 3 == 0 and step >= 6
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(RunDir(run_dir).checkpoint_dir))
    for name in reader.get_variable_to_shape_map():  # every tensor of it reads back
        reader.get_tensor(name)
    recorded = [r["step"] for r in read_metrics(RunDir(run_dir).metrics_file)]
    assert recorded in (list(range(3, step + 1, 3)), list(range(3, step + 4, 3)))

    resumed = run_python([*args, "--resume", f"--steps={step + 3}"]).stdout
    assert f"resuming at step {step} " in resumed
    assert resumed.strip().splitlines()[-1].startswith(f"done: step {step + 3}, train loss")
    assert latest_step(run_dir) == step + 3
    logged_steps = [r["step"] for r in read_metrics(RunDir(run_dir).metrics_file)]
    assert logged_steps == list(range(3, step + 4, 3))
