"""Sentence pairs -> length-bucketed batches for the encoder–decoder Transformer.

    (source, target) -> ids -> the smallest bucket length L with |source| <= L and |target| + 1 <= L
      -> batches of B_L pairs of that bucket, each side padded to L:
         x = (source (B_L, L), target_in = [BOS] + target (B_L, L))    PAD where padded
         y = target_out = target + [EOS] (B_L, L)                      IGNORE_LABEL where padded

**Why buckets.** Sentence lengths vary a lot (de-en: median 12 subword tokens, longest 60+):
padding every batch to the longest sentence of the set would make most of each batch padding,
computed and thrown away. Grouping pairs of similar length keeps padding small.

**Why a few fixed lengths.** Every distinct batch shape is one more trace of the train step
and, with XLA, one more compilation. Bucket lengths are L = T/4, T/2, 3T/4, T (T =
`context_length`), so a run compiles at most four shapes, and a batch of length L holds
B_L = batch_size · T / L pairs (rounded down to a multiple of 8): every batch has about the
same number of token slots, B · T per side.

**Order, and exact resume.** Each epoch permutes the pairs of each bucket with a generator
seeded by (seed, epoch), cuts them into full batches (the few pairs that do not fill the
last batch of a bucket wait for the next epoch's permutation), and shuffles the batches of all
buckets together. Step k's batch is therefore a pure function of (seed, k): `start_step=k`
starts exactly where an uninterrupted run would be at step k.

Training pairs longer than T on either side are left out (and counted); validation pairs are
cut to T instead, so that every one of them is scored.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from llm_tf.data.corpus import DataError
from llm_tf.data.pairs import SentencePairs
from llm_tf.tokenizers.base import BOS_ID, EOS_ID, IGNORE_LABEL, PAD_ID

NUM_BUCKETS = 4
ENCODE_CHUNK = 4096  # sentences per tokenizer call


@dataclasses.dataclass(frozen=True)
class PairBatches:
    """The datasets of a translation run and the numbers behind them.

    Attributes:
        train: ((source, target_in), target_out) batches from `start_step`, forever.
        val: the validation pairs, each once, in bucketed batches (None without any).
        bucket_lengths, batch_sizes: the shapes of the training batches.
        num_train, num_val: pairs used; num_too_long: training pairs left out.
        steps_per_epoch: training batches in one pass over the training pairs.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    bucket_lengths: tuple
    batch_sizes: tuple
    num_train: int
    num_val: int
    num_too_long: int
    steps_per_epoch: int


def encode_sentences(tokenizer, sentences) -> list[np.ndarray]:
    """Token ids of each sentence (no BOS/EOS), as NumPy int32 arrays."""
    out = []
    for start in range(0, len(sentences), ENCODE_CHUNK):
        ragged = tokenizer.encode(tf.constant(list(sentences[start:start + ENCODE_CHUNK])))
        flat, splits = ragged.flat_values.numpy(), ragged.row_splits.numpy()
        out += [flat[splits[i]:splits[i + 1]] for i in range(len(splits) - 1)]
    return out


def bucket_lengths(context_length: int) -> tuple:
    """T/4, T/2, 3T/4, T (rounded up, without repeats)."""
    return tuple(sorted({max(1, -(-context_length * i // NUM_BUCKETS))
                         for i in range(1, NUM_BUCKETS + 1)}))


def bucket_batch_size(batch_size: int, context_length: int, length: int) -> int:
    """Pairs per batch of bucket `length`: about batch_size · T token slots per side."""
    size = batch_size * context_length // length
    return size - size % 8 if size >= 8 else size


def padded_arrays(source_ids, target_ids, length: int, pad_id: int = PAD_ID,
                  bos_id: int = BOS_ID, eos_id: int = EOS_ID):
    """(source, target_in, target_out) int32 (N, length): cut to `length`, then padded
    (PAD inputs, IGNORE_LABEL targets). The special ids are the tokenizer's."""
    n = len(source_ids)
    source = np.full((n, length), pad_id, np.int32)
    target_in = np.full((n, length), pad_id, np.int32)
    target_out = np.full((n, length), IGNORE_LABEL, np.int32)
    for i, (s, t) in enumerate(zip(source_ids, target_ids)):
        s = s[:length]
        source[i, :len(s)] = s
        row_in = np.concatenate([[bos_id], t])[:length]
        row_out = np.concatenate([t, [eos_id]])[:length]
        target_in[i, :len(row_in)] = row_in
        target_out[i, :len(row_out)] = row_out
    return source, target_in, target_out


def _special_ids(tokenizer) -> tuple:
    """(pad_id, bos_id, eos_id) of `tokenizer`."""
    return tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id


def _assign(lengths_needed: np.ndarray, buckets: tuple) -> np.ndarray:
    """The index of the smallest bucket that holds each pair."""
    return np.searchsorted(np.asarray(buckets), lengths_needed, side="left")


def _gather(arrays):
    """A tf.data map: (indices (B,), length) -> ((source, target_in), target_out), each (B, L)."""
    source, target_in, target_out = (tf.constant(a) for a in arrays)

    def gather(indices, length):
        take = lambda a: tf.gather(a, indices)[:, :length]  # noqa: E731
        return (take(source), take(target_in)), take(target_out)

    return gather


def build_pair_batches(tokenizer, train_pairs: SentencePairs, val_pairs, context_length: int,
                       batch_size: int, seed: int, start_step: int = 0) -> PairBatches:
    """The training and validation batches of a translation run (see the module docstring).

    Args:
        tokenizer: encodes both sides.
        train_pairs, val_pairs: `SentencePairs` (val_pairs may be None).
        context_length: T, the longest source or target (with BOS/EOS) of a batch.
        batch_size: B, pairs per batch of the longest bucket.
        seed: the order of the training batches.
        start_step: the training dataset starts at this batch of the uninterrupted run.
    """
    T = context_length
    buckets = bucket_lengths(T)
    sources = encode_sentences(tokenizer, train_pairs.sources)
    targets = encode_sentences(tokenizer, train_pairs.targets)
    needed = np.array([max(len(s), len(t) + 1) for s, t in zip(sources, targets)], np.int64)
    keep = np.flatnonzero(needed <= T)
    if keep.size == 0:
        raise DataError(f"Every training pair in {train_pairs.origin!r} is longer than "
                        f"context_length={T} tokens: raise --context_length (and --max_length).")
    arrays = padded_arrays([sources[i] for i in keep], [targets[i] for i in keep], T,
                           *_special_ids(tokenizer))
    which = _assign(needed[keep], buckets)
    # A bucket with fewer pairs than one batch gives its pairs to the next longer bucket.
    sizes = [bucket_batch_size(batch_size, T, L) for L in buckets]
    members = [[] for _ in buckets]
    carry: list = []
    for b in range(len(buckets)):
        pool = carry + list(np.flatnonzero(which == b))
        if len(pool) >= sizes[b] or b == len(buckets) - 1:
            members[b], carry = pool, []
        else:
            carry = pool
    if len(members[-1]) and len(members[-1]) < sizes[-1]:
        sizes[-1] = len(members[-1])  # a tiny set: one smaller batch
    members = [np.asarray(m, np.int64) for m in members]
    steps_per_epoch = sum(len(m) // s for m, s in zip(members, sizes) if s)

    def epoch_plan(epoch):
        rng = np.random.default_rng([seed, epoch])
        batches = []
        for b, (rows, size) in enumerate(zip(members, sizes)):
            rows = rng.permutation(rows)
            batches += [(rows[i * size:(i + 1) * size], buckets[b])
                        for i in range(len(rows) // size if size else 0)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def plan_from_start():
        epoch, offset = divmod(start_step, steps_per_epoch)
        while True:
            for indices, length in epoch_plan(epoch)[offset:]:
                yield indices.astype(np.int32), np.int32(length)
            epoch, offset = epoch + 1, 0

    train = tf.data.Dataset.from_generator(plan_from_start, output_signature=(
        tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32)))
    train = train.map(_gather(arrays)).prefetch(tf.data.AUTOTUNE)
    val = None if val_pairs is None else validation_batches(tokenizer, val_pairs, T, batch_size)
    return PairBatches(train=train, val=val, bucket_lengths=buckets,
                       batch_sizes=tuple(sizes), num_train=int(keep.size),
                       num_val=0 if val_pairs is None else len(val_pairs),
                       num_too_long=len(train_pairs) - int(keep.size),
                       steps_per_epoch=steps_per_epoch)


def validation_batches(tokenizer, pairs: SentencePairs, context_length: int,
                       batch_size: int) -> tf.data.Dataset:
    """Every pair once, cut to `context_length`, in bucketed batches (the last of each bucket
    partial): ((source, target_in), target_out)."""
    T = context_length
    buckets = bucket_lengths(T)
    sources = encode_sentences(tokenizer, pairs.sources)
    targets = encode_sentences(tokenizer, pairs.targets)
    needed = np.array([min(T, max(len(s), len(t) + 1)) for s, t in zip(sources, targets)])
    which = _assign(needed, buckets)
    arrays = padded_arrays(sources, targets, T, *_special_ids(tokenizer))
    plan = []
    for b, length in enumerate(buckets):
        rows = np.flatnonzero(which == b).astype(np.int32)
        size = bucket_batch_size(batch_size, T, length) or 1
        plan += [(rows[i:i + size], length) for i in range(0, len(rows), size)]
    indices = tf.ragged.constant([p[0] for p in plan], dtype=tf.int32, row_splits_dtype=tf.int64)
    lengths = tf.constant([p[1] for p in plan], tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((indices, lengths))
    return dataset.map(_gather(arrays)).prefetch(tf.data.AUTOTUNE)
