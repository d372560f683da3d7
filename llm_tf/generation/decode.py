"""The decode loop: a key/value cache inside one `tf.while_loop` with static shapes.

The design document's §5.2 `generate_text` re-runs the whole sequence for every
new token, so generating N tokens costs O(N²) token-passes. Here the prompt is
run through the model in a few fixed-size chunks ("prefill") to fill the
key/value cache, and every later step runs one token per row against it: O(N)
token-passes, each attending over the cache.

Layout of a batch (B prompts of different lengths; see docs/generation.md)::

    slot       0    1    2    3    4    5    6   ...  T_max-1
    row 0     PAD  PAD  "h"  "i"  | new  new  new ...
    row 1     "h"  "e"  "l"  "l"  | new  new  new ...
                                  ^ prompt_end P: the first generated slot

Prompts are *left*-padded so that every row's next token goes to the same slot
(one slice update per step for the whole batch). Each row gets its own
positions (slot - start, so a padded row still starts at position 0) and a
padding mask over cache slots (its padding is never attended to), which makes a
row's tokens the same as when its prompt is generated alone.

Every tensor has a static shape: the token buffer is (B, T_max) with
T_max = `max_length`, the cache L tensors (B, 2, H, T_max, Dh) (one per layer, so
that XLA updates each in place; a stacked cache is copied every step), and the
loop bound is a tensor, so one XLA compilation serves every prompt length and
`max_new_tokens`.

The step follows keras-hub's samplers: `next_fn(tokens, cache, index)` runs the
token at slot index - 1 and returns the logits of slot `index`; the sampler only
picks a token.
"""

from __future__ import annotations

import weakref
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from llm_tf._validation import is_int
from llm_tf.generation import samplers

# Defaults only, for callers without a tokenizer: the special ids of llm_tf's own tokenizers.
# `Generator` and the export pass the tokenizer's (`tokenizer.pad_id`, ...).
from llm_tf.tokenizers.base import BOS_ID, EOS_ID, PAD_ID

# Prompt tokens per model call while filling the cache (`prefill`).
PREFILL_CHUNK = 64


def max_new_tokens_rule(max_length: int) -> str:
    """The policy, in words: 0 <= max_new_tokens <= max_length - 1.

    The prompt and the generated tokens share the model's context of
    `max_length` slots (the prompt keeps at least one); there is no sliding
    window. The prompt is cut from the left to fit (`prepare_prompts`).
    """
    return (f"`max_new_tokens` must be an integer in [0, {max_length - 1}]: the prompt and the "
            f"new tokens share the model's context of max_length={max_length} tokens (the "
            "prompt keeps at least one)")


def check_max_new_tokens(max_new_tokens, max_length: int) -> None:
    """A `ValueError` stating `max_new_tokens_rule` unless 0 <= max_new_tokens < max_length."""
    if not (is_int(max_new_tokens) and 0 <= max_new_tokens <= max_length - 1):
        raise ValueError(f"{max_new_tokens_rule(max_length)}. "
                         f"Received: max_new_tokens={max_new_tokens!r}")


def max_new_tokens_graph_checks(max_new_tokens, max_length: int) -> list:
    """The same rule for a scalar tensor: assertion ops raising `InvalidArgumentError`."""
    rule = max_new_tokens_rule(max_length)
    return [tf.debugging.assert_greater_equal(max_new_tokens, 0, message=rule),
            tf.debugging.assert_less_equal(max_new_tokens, max_length - 1, message=rule)]


class PreparedPrompts(NamedTuple):
    tokens: tf.Tensor  # int32 (B, T_max): prompts left-padded to end at slot prompt_end - 1
    lengths: tf.Tensor  # int32 (B,): prompt tokens kept per row (>= 1)
    prompt_end: tf.Tensor  # int32 scalar P: the first slot to generate into
    truncated: tf.Tensor  # bool (B,): the row's prompt was cut from the left


def prepare_prompts(prompt_ids, max_length: int, max_new_tokens,
                    bos_id: int = BOS_ID, pad_id: int = PAD_ID) -> PreparedPrompts:
    """Lays out ragged prompts in the (B, T_max) token buffer (a pure TF function).

    * An empty prompt becomes [BOS].
    * A prompt longer than `max_length - max_new_tokens` keeps its last tokens.
    * Prompts are left-padded with `pad_id` to end at slot P - 1, P = longest kept prompt.

    Args:
        prompt_ids: int RaggedTensor (B, (n)).
        max_length: T_max, a Python int.
        max_new_tokens: int scalar (validated by the caller).

    Returns:
        `PreparedPrompts`.
    """
    prompt_ids = tf.cast(prompt_ids, tf.int32)
    batch_size = prompt_ids.nrows(out_type=tf.int32)
    lengths = tf.cast(prompt_ids.row_lengths(), tf.int32)  # (B,)
    bos = tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], tf.constant(bos_id, tf.int32)))
    with_bos = tf.concat([bos, prompt_ids], axis=1).to_tensor(pad_id)  # (B, N + 1)
    room = max_length - tf.cast(max_new_tokens, tf.int32)
    wanted = tf.maximum(lengths, 1)  # an empty prompt keeps its BOS
    kept = tf.minimum(wanted, room)  # (B,)
    prompt_end = tf.maximum(tf.reduce_max(kept), 1)  # P
    slots = tf.range(max_length)[None, :]  # (1, T_max)
    # Slot s of row b holds token (lengths_b + 1) - P + s of `with_bos` (BOS is token 0).
    source = lengths[:, None] + 1 - prompt_end + slots  # (B, T_max)
    valid = tf.logical_and(slots >= prompt_end - kept[:, None], slots < prompt_end)
    source = tf.clip_by_value(source, 0, tf.shape(with_bos)[1] - 1)
    tokens = tf.where(valid, tf.gather(with_bos, source, axis=1, batch_dims=1), pad_id)
    return PreparedPrompts(tokens, kept, prompt_end, kept < wanted)


def prompt_layout(lengths, prompt_end, max_length: int):
    """Per-row positions (B, T_max) and padding mask (B, T_max) over cache slots."""
    slots = tf.range(max_length)[None, :]  # (1, T_max)
    starts = (prompt_end - lengths)[:, None]  # (B, 1): first real slot
    positions = tf.maximum(slots - starts, 0)  # (B, T_max)
    return positions, slots >= starts


def make_next_fn(model, lengths, prompt_end) -> Callable:
    """keras-hub's `next(tokens, cache, index)` for a `TransformerLM` and this layout.

    Returns a function that runs the token at slot index - 1 of every row and
    returns (logits (B, V) for slot `index`, updated cache).
    """
    positions, padding_mask = prompt_layout(lengths, prompt_end, model.config.max_length)

    def next_fn(tokens, cache, index):
        # Gather with a tensor index: XLA slices dynamically without a shape change.
        previous = tf.gather(tokens, [index - 1], axis=1)  # (B, 1)
        logits, cache = model.call_with_cache(
            previous, cache, index - 1, padding_mask=padding_mask,
            positions=tf.gather(positions, [index - 1], axis=1))  # (B, 1, V)
        return logits[:, 0, :], cache

    return next_fn


def prefill(model, tokens, lengths, prompt_end, chunk: int = PREFILL_CHUNK):
    """Fills the cache with the prompt slots [0, P - 1), `chunk` slots per model call.

    One call over the whole (B, T_max) buffer would also keep shapes static, but
    would cost O(T_max²) attention for every prompt, however short. A loop over
    fixed-size chunks costs O(P · T_max) and still compiles once. The last chunk
    is shifted left to end inside the buffer (recomputing some slots, harmlessly);
    slots from P on get padding here and each is overwritten by its own step
    before any query may attend to it (causal mask). The logits are not used:
    `tf.function` and XLA prune the output projection. Slot P - 1 is left to the
    first decode step, which runs it anyway.

    Returns:
        the cache: a tuple of L per-layer tensors (B, 2, H, T_max, Dh).
    """
    max_length = model.config.max_length
    chunk = min(int(chunk), max_length)
    positions, padding_mask = prompt_layout(lengths, prompt_end, max_length)
    cache = model.init_cache(tf.shape(tokens)[0])  # L × (B, 2, H, T_max, Dh)

    def body(start, cache):
        begin = tf.minimum(start, max_length - chunk)
        slots = begin + tf.range(chunk)  # (C,)
        _, cache = model.call_with_cache(
            tf.gather(tokens, slots, axis=1), cache, begin, padding_mask=padding_mask,
            positions=tf.gather(positions, slots, axis=1))  # (B, C, V) unused
        return start + chunk, cache

    _, cache = tf.while_loop(lambda start, cache: start < prompt_end - 1, body,
                             (tf.constant(0, tf.int32), cache))
    return cache


def decode_step(next_fn, sample_fn, index, tokens, cache, done, prompt_end,
                eos_id: int = EOS_ID, pad_id: int = PAD_ID):
    """One step: logits of slot `index`, a token per row (PAD for finished rows), written in.

    Returns:
        (index + 1, tokens, cache, done).
    """
    logits, cache = next_fn(tokens, cache, index)  # (B, V)
    token = sample_fn(logits, index - prompt_end)  # (B,)
    token = tf.where(done, tf.constant(pad_id, tf.int32), token)
    # A one-hot write keeps the buffer's static shape (B, T_max).
    at_index = tf.range(tf.shape(tokens)[1])[None, :] == index  # (1, T_max)
    tokens = tf.where(at_index, token[:, None], tokens)
    return index + 1, tokens, cache, tf.logical_or(done, token == eos_id)


def sampling_loop(next_fn, sample_fn, tokens, cache, prompt_end, max_new_tokens,
                  eos_id: int = EOS_ID, pad_id: int = PAD_ID):
    """Fills slots [P, P + max_new_tokens) of `tokens`, stopping when every row hit EOS.

    Args:
        next_fn: `(tokens, cache, index) -> (logits (B, V), cache)`.
        sample_fn: `(logits (B, V), step) -> int32 (B,)`.
        tokens: int32 (B, T_max) from `prepare_prompts`.
        cache: from `prefill`.
        prompt_end: P. max_new_tokens: int scalar.

    Returns:
        int32 (B, T_max): prompts and new tokens; PAD after a row's EOS.
    """
    end = prompt_end + tf.cast(max_new_tokens, tf.int32)
    done = tf.zeros([tf.shape(tokens)[0]], tf.bool)

    def condition(index, tokens, cache, done):
        return tf.logical_and(index < end, tf.logical_not(tf.reduce_all(done)))

    def body(index, tokens, cache, done):
        return decode_step(next_fn, sample_fn, index, tokens, cache, done, prompt_end,
                           eos_id, pad_id)

    _, tokens, _, _ = tf.while_loop(condition, body, (prompt_end, tokens, cache, done))
    return tokens


def make_sample_fn(temperature, top_k, top_p, seed) -> Callable:
    """The `sample_fn(logits, step)` of `samplers.sample` with these parameters (the scalar
    tensors of `Sampling.tensors()`)."""
    return lambda logits, step: samplers.sample(logits, seed, step, temperature, top_k, top_p)


def cached_decode(model, tokens, lengths, prompt_end, max_new_tokens, temperature, top_k, top_p,
                  seed, eos_id: int = EOS_ID, pad_id: int = PAD_ID,
                  prefill_chunk: int = PREFILL_CHUNK):
    """Prefill, then the sampling loop: the whole cached generation as one graph.

    All arguments but `model` may be tensors; wrap this in a `tf.function`
    (with `jit_compile=True` for XLA) whose signature fixes T_max.
    """
    cache = prefill(model, tokens, lengths, prompt_end, prefill_chunk)
    return sampling_loop(make_next_fn(model, lengths, prompt_end),
                         make_sample_fn(temperature, top_k, top_p, seed),
                         tokens, cache, prompt_end, max_new_tokens, eos_id, pad_id)


# -- the reference: full recompute ---------------------------------------------

_FORWARD_FNS = weakref.WeakKeyDictionary()


def _forward_fn(model):
    """`model(ids, padding_mask, positions)` in a `tf.function` for any (B, T)."""
    if model not in _FORWARD_FNS:
        spec = lambda dtype: tf.TensorSpec((None, None), dtype)  # noqa: E731
        _FORWARD_FNS[model] = tf.function(
            lambda ids, mask, positions: model(ids, padding_mask=mask, positions=positions),
            autograph=False, input_signature=[spec(tf.int32), spec(tf.bool), spec(tf.int32)])
    return _FORWARD_FNS[model]


def generate_reference(model, prompt_ids, max_new_tokens: int,
                       sampling: samplers.Sampling | None = None,
                       eos_id: int = EOS_ID, pad_id: int = PAD_ID,
                       bos_id: int = BOS_ID) -> list[list[int]]:
    """The design document's §5.2 loop done right: no cache, the whole sequence each step.

    Each step runs the model on every token so far (O(N²) for N tokens) and
    samples from the last position's logits with the same sampler and seeds as
    the cached loop, so the two must produce the same tokens. It exists to
    test and benchmark the cached loop against.

    Args:
        prompt_ids: list of B lists of ints.
        max_new_tokens: as in `Generator.generate_ids`.
        sampling: a `Sampling` (default greedy, seed 0).

    Returns:
        B lists of new token ids, each ending at its first EOS (kept) if any.
    """
    sampling = sampling or samplers.Sampling(seed=0)
    max_length = model.config.max_length
    check_max_new_tokens(max_new_tokens, max_length)
    prepared = prepare_prompts(ragged_from_lists(prompt_ids), max_length, max_new_tokens,
                               bos_id, pad_id)
    prompt_end = int(prepared.prompt_end)
    ids = prepared.tokens[:, :prompt_end]  # (B, P)
    starts = (prompt_end - prepared.lengths)[:, None]  # (B, 1)
    done = tf.zeros([ids.shape[0]], tf.bool)
    forward = _forward_fn(model)
    for step in range(max_new_tokens):
        slots = tf.range(tf.shape(ids)[1])[None, :]  # (1, t)
        logits = forward(ids, slots >= starts, tf.maximum(slots - starts, 0))  # (B, t, V)
        token = samplers.sample(logits[:, -1, :], sampling.seed, step, sampling.temperature,
                                sampling.top_k, sampling.top_p)
        token = tf.where(done, pad_id, token)  # (B,)
        ids = tf.concat([ids, token[:, None]], axis=1)  # (B, t + 1)
        done = tf.logical_or(done, token == eos_id)
        if bool(tf.reduce_all(done)):
            break
    return trim_new_tokens(ids[:, prompt_end:].numpy(), eos_id)


def ragged_from_lists(prompt_ids) -> tf.RaggedTensor:
    """B lists of ints -> int32 RaggedTensor (B, (n)); empty lists allowed."""
    rows = [list(map(int, row)) for row in prompt_ids]
    flat = np.asarray([t for row in rows for t in row], dtype=np.int32)
    splits = np.cumsum([0] + [len(row) for row in rows], dtype=np.int64)
    return tf.RaggedTensor.from_row_splits(flat, splits, validate=False)


def trim_new_tokens(new_tokens: np.ndarray, eos_id: int = EOS_ID) -> list[list[int]]:
    """Rows of generated ids cut after their first EOS (kept); the PAD that follows dropped."""
    rows = []
    for row in np.asarray(new_tokens).tolist():
        rows.append(row[:row.index(eos_id) + 1] if eos_id in row else row)
    return rows
