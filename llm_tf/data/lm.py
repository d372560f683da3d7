"""The language-modelling pipeline: corpus -> token stream -> split -> windows -> batches.

    ids -> windows of T+1 -> (x = w[:-1], y = w[1:]) -> shuffle(seed)
        -> batch(B, drop_remainder=True) -> prefetch          # static (B, T) for XLA/TPU

**Split.** The validation split is the last `val_fraction` of the corpus's
*token stream* (nanoGPT's `data[int(n*0.9):]` on tiny Shakespeare, so that
validation losses compare). Its size needs a token count, so the corpus is
tokenized once up front (streaming, in tf.data) to count; a small corpus is
kept from that same pass, a large one is counted and discarded.

**Training windows.** nanoGPT draws random offsets `i ~ U[0, n-T-1)` each step.
The epoch-able, deterministic equivalent used here for a corpus that fits in
memory (`max_in_memory_tokens`, default 16M tokens = 64 MB of int32): every
offset (stride 1) once per epoch, in a fresh permutation per epoch computed by
`stateless_shuffle(seed=(seed, epoch))`. Each window is sampled exactly like
nanoGPT's, but without replacement, and step k's batch is a pure function of
(seed, k). A corpus too big for memory is streamed instead: consecutive
windows with stride T (every token is a target once per epoch), shuffled in a
`shuffle_buffer` of windows with `seed`.

**Validation windows.** The whole validation split in consecutive windows
(stride T: every validation token after the first is predicted exactly once,
with up to T tokens of context), in order, unshuffled. Shapes stay static
without dropping anything: the last, partial window is completed with PAD inputs
and `IGNORE_LABEL` targets (the PAD inputs come after its real tokens, so causal
attention never lets them reach a real position; ignored targets carry no loss),
and the last batch is filled with windows of PAD inputs and ignored targets. No
window crosses the train/validation boundary: the two splits are windowed separately.

**Resuming.** Two exact ways: `start_step=k` makes the training dataset start
at batch k of the uninterrupted run (in memory: computed, not replayed;
streaming: replayed through the pipeline, without the model), or
`tf.train.Checkpoint(iterator=iter(train_ds))` saves and restores the
iterator's position (including the shuffle buffer) with the model's checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from llm_tf.config import DataConfig
from llm_tf.data.corpora import load_corpus
from llm_tf.data.corpus import Corpus, DataError
from llm_tf.tokenizers.base import IGNORE_LABEL, PAD_ID

DEFAULT_MAX_IN_MEMORY_TOKENS = 16 * 2**20
DEFAULT_SHUFFLE_BUFFER = 10_000
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class LMData:
    """The two datasets and the numbers behind them.

    Attributes:
        train, val: datasets of `(x, y)`, each int32 (B, T), y = x shifted left by one.
        num_train_tokens, num_val_tokens: sizes of the two splits.
        train_windows: training windows per epoch.
        val_batches: batches in one pass over `val` (the whole validation split,
            its tail padded: PAD inputs, `IGNORE_LABEL` targets).
        streaming: whether the token stream is re-read from the corpus (big
            corpora) rather than held in memory.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    num_train_tokens: int
    num_val_tokens: int
    train_windows: int
    val_batches: int
    streaming: bool


def token_chunks(corpus: Corpus, tokenizer, skip_chunks: int = 0) -> tf.data.Dataset:
    """The corpus's token stream as 1-D int32 chunks (one per batch of lines), in order."""
    batches = corpus.line_batches()
    if skip_chunks:
        batches = batches.skip(skip_chunks)  # skipped batches are read, not tokenized
    return batches.map(lambda batch: tokenizer.encode(batch).flat_values,  # (sum n,)
                       num_parallel_calls=AUTOTUNE, deterministic=True)


def _slice_stream(chunks: tf.data.Dataset, start: int, stop: Optional[int]) -> tf.data.Dataset:
    """Only the tokens at stream positions [start, stop), as chunks; stops reading at `stop`."""
    start = tf.constant(start, tf.int64)
    stop_ = tf.constant(np.iinfo(np.int64).max if stop is None else stop, tf.int64)

    def step(seen, chunk):
        n = tf.size(chunk, out_type=tf.int64)
        lo = tf.clip_by_value(start - seen, 0, n)
        hi = tf.clip_by_value(stop_ - seen, 0, n)
        return seen + n, (seen, chunk[lo:hi])

    sliced = chunks.scan(tf.constant(0, tf.int64), step)
    if stop is not None:
        sliced = sliced.take_while(lambda seen, chunk: seen < stop_)
    return sliced.map(lambda seen, chunk: chunk).filter(lambda chunk: tf.size(chunk) > 0)


def stride_windows(chunks: tf.data.Dataset, context_length: int) -> tf.data.Dataset:
    """`(x, y)` pairs of shape (T,), from windows of T+1 tokens starting every T tokens.

    Consecutive windows share one token (the last target of one is the first
    input of the next), so every token after the first is a target once. The
    split into x and y happens per chunk, before `unbatch`, so that no
    function runs per window or per batch downstream.
    """
    T = context_length
    W = T + 1

    def step(buffer, chunk):
        buffer = tf.concat([buffer, chunk], axis=0)
        n = tf.maximum((tf.size(buffer) - 1) // T, 0)                     # whole windows
        index = tf.range(n)[:, tf.newaxis] * T + tf.range(W)[tf.newaxis]  # (n, W)
        windows = tf.gather(buffer, index)                                # (n, W)
        return buffer[n * T:], (windows[:, :-1], windows[:, 1:])          # (n, T), (n, T)

    return chunks.scan(tf.zeros([0], tf.int32), step).unbatch()


def whole_split_batches(chunks: tf.data.Dataset, num_tokens: int, context_length: int,
                        batch_size: int, pad_id: int = PAD_ID) -> tf.data.Dataset:
    """`(x, y)` batches (B, T) in which each of the `num_tokens` tokens after the first is a
    target exactly once; the rest of the last window and of the last batch has PAD inputs
    and `IGNORE_LABEL` targets.

    Returns:
        a dataset of ceil(ceil((num_tokens - 1) / T) / B) batches.
    """
    T, B = context_length, batch_size
    filler_id = -1  # no token id is negative: marks the filler until it is told apart below
    if (num_tokens - 1) % T:  # a partial last window: complete it
        chunks = chunks.concatenate(tf.data.Dataset.from_tensors(tf.fill([T], filler_id)))
    filler_window = tf.fill([T], filler_id)
    filler = tf.data.Dataset.from_tensors((filler_window, filler_window)).repeat(B - 1)

    def mark(x, y):  # (B, T) each
        return tf.where(x < 0, pad_id, x), tf.where(y < 0, IGNORE_LABEL, y)

    return stride_windows(chunks, T).concatenate(filler).batch(B, drop_remainder=True).map(mark)


def _count_tokens(corpus, tokenizer, keep_limit):
    """One pass over the token stream: per-chunk sizes, and the tokens if they fit."""
    sizes, kept, total = [], [], 0
    for chunk in token_chunks(corpus, tokenizer).as_numpy_iterator():
        sizes.append(len(chunk))
        total += len(chunk)
        if kept is not None:
            kept.append(chunk)
            if total > keep_limit:
                kept = None  # too big to hold: stream it instead
    tokens = None if kept is None else (np.concatenate(kept) if kept else
                                        np.zeros([0], np.int32))
    return np.asarray(sizes, np.int64), tokens


def _check(condition, corpus, message):
    if not condition:
        raise DataError(f"The corpus {corpus.source!r} is too short: {message}")


def evaluation_batches(corpus: Corpus, tokenizer, context_length: int,
                       batch_size: int) -> tuple[tf.data.Dataset, int]:
    """A whole text as validation batches: `(dataset of (x, y) (B, T), number of tokens)`.

    Every token after the first is a target exactly once (`whole_split_batches`); for
    `--eval-data` files and `llm-tf evaluate` on a language model.
    """
    corpus.validate()
    sizes, _ = _count_tokens(corpus, tokenizer, keep_limit=0)
    total = int(sizes.sum())
    if total < 2:
        raise DataError(f"The evaluation text {corpus.source!r} has {total} token(s); at least "
                        "2 are needed (one to read, one to predict).")
    batches = whole_split_batches(token_chunks(corpus, tokenizer), total, context_length,
                                  batch_size, tokenizer.pad_id)
    return batches.prefetch(AUTOTUNE), total


def build_lm_data(data_config: DataConfig, tokenizer, *, corpus: Optional[Corpus] = None,
                  eval_corpus: Optional[Corpus] = None,
                  start_step: int = 0, epochs: Optional[int] = None, train_stride: int = 1,
                  streaming: Optional[bool] = None,
                  max_in_memory_tokens: int = DEFAULT_MAX_IN_MEMORY_TOKENS,
                  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER) -> LMData:
    """Builds the training and validation datasets for a decoder-only LM.

    Args:
        data_config: source, context_length T, batch_size B, val_fraction, seed.
        tokenizer: an `llm_tf.tokenizers.Tokenizer`.
        corpus: the text; default `load_corpus(data_config.source)`.
        eval_corpus: a separate validation text (`--eval-data`); default
            `data_config.eval_source` if set. With one, the whole corpus trains
            and `val_fraction` is not used.
        start_step: the training dataset starts at this batch of the
            uninterrupted run (exact resumption).
        epochs: passes over the training windows; None repeats forever.
        train_stride: distance between training window offsets in memory
            (1 = every offset, as nanoGPT's random offsets).
        streaming: force streaming (True) or in-memory (False); None decides
            by `max_in_memory_tokens`.
        shuffle_buffer: windows in the shuffle buffer when streaming.

    Returns:
        an `LMData`; `train` and `val` yield `(x, y)` int32 of static shape (B, T).
    """
    if not isinstance(data_config, DataConfig):
        raise DataError("`data_config` must be an llm_tf.DataConfig. "
                        f"Received: {type(data_config).__name__}")
    for name, value, low in (("start_step", start_step, 0), ("train_stride", train_stride, 1),
                             ("shuffle_buffer", shuffle_buffer, 1),
                             ("max_in_memory_tokens", max_in_memory_tokens, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise DataError(f"`epochs` must be None or a positive integer. Received: epochs={epochs!r}")
    corpus = load_corpus(data_config.source) if corpus is None else corpus
    corpus.validate()
    if eval_corpus is None and data_config.eval_source:
        eval_corpus = load_corpus(data_config.eval_source)
    T, B, seed = data_config.context_length, data_config.batch_size, data_config.seed
    W = T + 1

    sizes, tokens = _count_tokens(corpus, tokenizer, max_in_memory_tokens)
    total = int(sizes.sum())
    if eval_corpus is not None:
        n_train = total
        val, n_val = evaluation_batches(eval_corpus, tokenizer, T, B)
    else:
        n_train = int(total * (1 - data_config.val_fraction))  # nanoGPT: int(n * 0.9)
        n_val = total - n_train
    if streaming is None:
        streaming = tokens is None
    elif not streaming and tokens is None:
        raise DataError(f"`streaming`=False, but {corpus.source!r} has {total} tokens, more "
                        f"than `max_in_memory_tokens`={max_in_memory_tokens}.")
    settings = (f"context_length={T}, batch_size={B}, val_fraction={data_config.val_fraction}")
    val_windows = max(0, (n_val - 1) // T)
    _check(eval_corpus is not None or val_windows >= B, corpus,
           f"its validation split has {n_val} tokens ({val_windows} windows of {W}), but one "
           f"batch needs {B} windows ({B * T + 1} tokens); corpus has {total} tokens. Use a "
           f"longer corpus, or lower context_length/batch_size, or raise val_fraction "
           f"({settings}).")

    if streaming:
        train_windows = max(0, (n_train - 1) // T)
        stride_note = f"stride {T}"
    else:
        train_windows = max(0, (n_train - W) // train_stride + 1)
        stride_note = f"stride {train_stride}"
    _check(train_windows >= B, corpus,
           f"its training split has {n_train} tokens ({train_windows} windows of {W}, "
           f"{stride_note}), fewer than one batch of {B} ({settings}).")

    if streaming:
        chunks = token_chunks(corpus, tokenizer)
        train = stride_windows(_slice_stream(chunks, 0, n_train), T)  # (x, y), each (T,)
        train = train.shuffle(shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=True).repeat(epochs)
        train = train.skip(start_step * B).batch(B, drop_remainder=True)
        if eval_corpus is None:
            # Start the validation read at the batch of lines that holds token n_train.
            ends = np.cumsum(sizes)
            first_chunk = int(np.searchsorted(ends, n_train, side="right"))
            before = int(ends[first_chunk - 1]) if first_chunk else 0
            val_chunks = token_chunks(corpus, tokenizer, skip_chunks=first_chunk)
            val_chunks = _slice_stream(val_chunks, n_train - before, None)
    else:
        train_tokens = tf.constant(tokens[:n_train])
        if eval_corpus is None:
            val_chunks = tf.data.Dataset.from_tensors(tf.constant(tokens[n_train:]))
        train = _random_offset_batches(train_tokens, train_windows, train_stride, W, B, seed,
                                       start_step, epochs)
    train = train.prefetch(AUTOTUNE)
    if eval_corpus is None:
        val = whole_split_batches(val_chunks, n_val, T, B, tokenizer.pad_id).prefetch(AUTOTUNE)
    val_batches = math.ceil(math.ceil((n_val - 1) / T) / B)
    return LMData(train=train, val=val, num_train_tokens=n_train, num_val_tokens=n_val,
                  train_windows=train_windows, val_batches=val_batches,
                  streaming=bool(streaming))


def _random_offset_batches(tokens, num_windows, stride, W, B, seed, start_step, epochs):
    """Batches of (B, W) windows at every `stride`-th offset, permuted afresh each epoch."""
    position = start_step * B              # windows already consumed before start_step
    first_epoch, skip = divmod(position, num_windows)

    # int32 offsets halve the permutation's memory when the token count allows.
    dtype = tf.int32 if tokens.shape[0] < 2**31 - 1 else tf.int64

    def epoch_offsets(epoch):
        permutation = tf.random.experimental.stateless_shuffle(
            tf.range(num_windows, dtype=dtype), seed=tf.stack([tf.constant(seed, tf.int64),
                                                               epoch]))
        return tf.data.Dataset.from_tensor_slices(permutation * stride)

    last_epoch = np.iinfo(np.int64).max if epochs is None else epochs
    offsets = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(epoch_offsets).skip(skip)

    def gather(starts):  # (B,) -> x (B, T), y (B, T)
        index = starts[:, tf.newaxis] + tf.range(W, dtype=starts.dtype)[tf.newaxis]  # (B, W)
        windows = tf.gather(tokens, index)                                          # (B, W)
        return windows[:, :-1], windows[:, 1:]

    return offsets.batch(B, drop_remainder=True).map(gather, num_parallel_calls=AUTOTUNE)
