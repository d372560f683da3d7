"""Sentence pairs -> padded batches for the encoder-decoder Transformer.

    (source text, target text)
      -> source ids                                  truncated/padded to S
      -> target_in  = [BOS] + target ids             truncated/padded to T
      -> target_out =         target ids + [EOS]     truncated/padded to T
      -> ((source (B, S), target_in (B, T)), target_out (B, T))

`target_in` is what the decoder reads (teacher forcing) and `target_out` what it
must predict, position by position: target_out[:, t] = target_in[:, t + 1].
BOS, EOS and PAD are the target tokenizer's (`bos_id`, `eos_id`, `pad_id`; the
source is padded with the source tokenizer's PAD). Padded *labels* are `IGNORE_LABEL`
(-100), which carries no loss (`llm_tf.training.losses`): a label is never confused
with a real id.

This is the simple fixed-shape version (every batch padded to S and T), for small
experiments such as notebook 05's toy task; `llm-tf train --task translation` batches
by length instead (`llm_tf.data.buckets`).
"""

from __future__ import annotations

from typing import Iterable, Union

import tensorflow as tf

from llm_tf.data.corpus import DataError
from llm_tf.tokenizers.base import IGNORE_LABEL

AUTOTUNE = tf.data.AUTOTUNE


def make_seq2seq_dataset(pairs: Union[tf.data.Dataset, Iterable[tuple[str, str]]],
                         source_tokenizer, target_tokenizer, batch_size: int,
                         max_source_length: int, max_target_length: int, *,
                         shuffle: bool = False, seed: int = 0,
                         shuffle_buffer: int = 10_000,
                         drop_remainder: bool = True) -> tf.data.Dataset:
    """Batches `((source, target_in), target_out)`, int32, static (B, S), (B, T), (B, T).

    Args:
        pairs: a `tf.data.Dataset` of (source, target) scalar strings, or a
            Python iterable of (source, target) strings.
        source_tokenizer, target_tokenizer: `llm_tf.tokenizers.Tokenizer`s
            (may be the same object).
        batch_size: B.
        max_source_length: S; longer sources are truncated.
        max_target_length: T; target_in/target_out are truncated to T (so a
            truncated target_out has no EOS).
        shuffle: shuffle pairs (with `seed`) before batching.
        drop_remainder: drop the last partial batch (static shapes).
    """
    for name, value in (("batch_size", batch_size), ("max_source_length", max_source_length),
                        ("max_target_length", max_target_length),
                        ("shuffle_buffer", shuffle_buffer)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if not isinstance(pairs, tf.data.Dataset):
        pairs = list(pairs)
        if not pairs:
            raise DataError("`pairs` is empty: give at least one (source, target) pair.")
        if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
            raise DataError("`pairs` must hold (source, target) string pairs.")
        sources, targets = zip(*pairs)
        pairs = tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
    spec = pairs.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2
            and all(getattr(s, "dtype", None) == tf.string for s in spec)):
        raise DataError("`pairs` must be a dataset of (source, target) strings. "
                        f"Received element_spec: {spec}")
    if shuffle:
        pairs = pairs.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    S, T = max_source_length, max_target_length

    def encode(sources, targets):  # (B,), (B,) strings
        source = source_tokenizer.encode(sources)                           # (B, (n))
        target = target_tokenizer.encode(targets)                           # (B, (m))
        target_in = _prepend(target, target_tokenizer.bos_id)               # (B, (m+1))
        target_out = _append(target, target_tokenizer.eos_id)               # (B, (m+1))
        source_pad, target_pad = source_tokenizer.pad_id, target_tokenizer.pad_id
        return ((_pad(source, S, source_pad), _pad(target_in, T, target_pad)),
                _pad(target_out, T, IGNORE_LABEL))

    return (pairs.batch(batch_size, drop_remainder=drop_remainder)
            .map(encode, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))


def _prepend(ids: tf.RaggedTensor, token: int) -> tf.RaggedTensor:
    column = tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], token))
    return tf.concat([column, ids], axis=1)


def _pad(ids: tf.RaggedTensor, length: int, pad_id: int) -> tf.Tensor:
    """(B, (n)) -> (B, length): cut, or padded on the right with `pad_id`."""
    return ids.to_tensor(default_value=pad_id, shape=[None, length])


def _append(ids: tf.RaggedTensor, token: int) -> tf.RaggedTensor:
    column = tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], token))
    return tf.concat([ids, column], axis=1)
