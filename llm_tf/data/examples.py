"""Batches of whole examples (fine-tuning), shuffled per epoch, resumable at any step.

Pre-training cuts one token stream into windows (`llm_tf.data.lm`); a fine-tuning set is
N separate examples, each already laid out in fixed-size arrays (token ids (N, T), labels
(N,) or (N, T)). Two ways through them:

* `shuffled_batches` — training: epoch e visits the N examples in the permutation
  `stateless_shuffle(range(N), seed=(seed, e))`, epochs follow each other without a gap,
  and batches of B are cut from that stream (a batch may straddle two epochs). Batch k is a
  pure function of (seed, k), so a run resumed at step k continues with batch k: computed,
  not replayed.
* `ordered_batches` — evaluation: every example exactly once, in order; the last batch is
  completed with filler rows (PAD ids, `IGNORE_LABEL` labels) that carry no loss, so
  shapes stay static and nothing is dropped.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from llm_tf.data.corpus import DataError

AUTOTUNE = tf.data.AUTOTUNE


def _check(arrays) -> int:
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError("The example arrays must be non-empty and of one length. "
                         f"Received lengths: {[len(a) for a in arrays]}")
    return sizes.pop()


def shuffled_batches(arrays, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """An endless dataset of batches: tuples of `arrays[i][indices]`, (B, ...) each.

    Args:
        arrays: NumPy arrays whose first axis is the example (N, ...).
        batch_size: B.
        seed: the shuffle seed.
        start_step: the first batch is batch `start_step` of the uninterrupted stream.
    """
    n = _check(arrays)
    constants = tuple(tf.constant(a) for a in arrays)
    first_epoch, skip = divmod(start_step * batch_size, n)

    def epoch_indices(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int32), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order)

    indices = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
    indices = indices.flat_map(epoch_indices).skip(skip)

    def gather(index):  # (B,) -> tuple of (B, ...)
        return tuple(tf.gather(c, index) for c in constants)

    return indices.batch(batch_size, drop_remainder=True).map(
        gather, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def ordered_batches(arrays, batch_size: int, fill_values) -> tf.data.Dataset:
    """Every example once, in order, in batches of B; the last batch completed with rows of
    `fill_values` (one scalar per array). ceil(N / B) batches."""
    n = _check(arrays)
    padded_n = math.ceil(n / batch_size) * batch_size
    filled = []
    for array, fill in zip(arrays, fill_values):
        extra = np.full((padded_n - n, *array.shape[1:]), fill, dtype=array.dtype)
        filled.append(np.concatenate([array, extra]))
    return tf.data.Dataset.from_tensor_slices(tuple(filled)).batch(batch_size, drop_remainder=True)


def epoch_steps(num_examples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps in `epochs` passes over `num_examples` (at least 1)."""
    return max(1, math.ceil(epochs * num_examples / batch_size))


def split_held_out(examples, fraction: float, seed: int):
    """(training, held-out) subsets of `examples` (anything with `len`, `subset(indices)` and
    `source`): a seeded random `fraction` held out for validation, at least one example on
    each side, both in file order."""
    n = len(examples)
    if n < 2:
        raise DataError(f"{examples.source}: {n} example(s); at least 2 are needed to hold "
                        "some out for validation (or pass --eval-data).")
    order = np.random.default_rng(seed).permutation(n)
    held = min(max(1, round(fraction * n)), n - 1)
    return examples.subset(np.sort(order[held:])), examples.subset(np.sort(order[:held]))
