"""Shared pieces of the training tests: tiny configs, a small corpus, subprocess runs."""

from __future__ import annotations

import os
import subprocess
import sys

import tensorflow as tf

from llm_tf.config import DataConfig, ModelConfig, TrainConfig

# d_model 32, 2 layers: seconds, not minutes.
TINY_MODEL = dict(d_model=32, num_heads=2, num_layers=2, dff=64, max_length=32, dropout=0.0,
                  use_bias=False)
TINY_CLI = ["--d_model=32", "--num_heads=2", "--num_layers=2", "--dff=64", "--max_length=32",
            "--context_length=32", "--batch_size=8", "--log_interval=2", "--sample_length=0",
            "--warmup_steps=2"]


def tiny_configs(vocab_size=64, steps=6, **train_overrides):
    model = ModelConfig(vocab_size=vocab_size, **TINY_MODEL)
    data = DataConfig(context_length=32, batch_size=8)
    train = TrainConfig(steps=steps, warmup_steps=2, eval_interval=2, log_interval=2,
                        sample_length=0, **train_overrides)
    return model, data, train


def write_corpus(path, chars=40_000) -> str:
    """A slice of the built-in corpus (CPython's docs) as a UTF-8 file; returns its path."""
    from llm_tf.data import builtin_text
    text = builtin_text()[:chars]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


def random_batches(vocab_size, batch_size=8, length=32, seed=0, count=None):
    """A dataset of (x, y) int32 (B, T) batches of random tokens in [4, V) (no PAD)."""
    g = tf.random.Generator.from_seed(seed)
    n = (count or 16) * batch_size
    windows = g.uniform((n, length + 1), 4, vocab_size, dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices(windows).batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda w: (w[:, :-1], w[:, 1:]))
    return ds if count else ds.repeat()


def python_env(**extra):
    """Environment for a child Python: quiet TensorFlow, this checkout importable."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **extra)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def run_python(code_or_args, *, cwd=None, env=None, check=True):
    """Runs `python -c CODE` (a str) or `python ARGS...` (a list); returns the CompletedProcess."""
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env or python_env(),
                          capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def popen_python(args, *, cwd=None, env=None):
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env or python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
