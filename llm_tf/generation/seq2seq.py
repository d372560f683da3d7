"""Decoding an encoder–decoder `Transformer`: what greedy and beam search share, and greedy.

    source ids (B, S) --encoder, once--> outputs (B, S, D)
                      --each decoder layer, once--> cross-attention keys/values L × (B, 2, H, S, Dh)
    BOS -> step -> token -> step -> ... -> EOS      one `tf.while_loop`, static shapes
           (one position a step: self-attention keys/values cached, L × (B, 2, H, T_max, Dh))

Per step, the decoder runs one position: its self-attention reads the cache of the earlier
positions (`DecoderLayer.call_with_cache`), and its cross-attention reads the encoder's keys
and values projected once before the loop (`Transformer.encoder_key_values`), not projected
again from the encoder's outputs at every step. Every tensor has a static shape (the output
buffer is (B, T_max), T_max = the model's `max_length`), so the loop compiles once with XLA
per batch size and source length.

**Rules every search here follows** (greedy and beam, so that beam 1 is greedy token for token):

* scores are float32 log-probabilities of the model's softmax over the whole vocabulary;
  PAD and BOS are never chosen (their log-probability is set to -inf after the softmax);
* an output ends with EOS, which counts as one of its tokens;
* a source of n tokens may produce at most `min(T_max, ceil(max_len_a · n) + max_len_b)`
  tokens (EOS included): at the last of them only EOS may be chosen. The defaults, a = 1.5 and
  b = 10, leave room for a target half again as long as its source (de→en subword lengths are
  within 1.3× of each other for 95% of the de-en pairs) plus a margin for short sources.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

from llm_tf.tokenizers.base import BOS_ID, EOS_ID, PAD_ID

MAX_LEN_A = 1.5
MAX_LEN_B = 10
NEG_INF = -1e9  # a finite -inf: sums of it stay ordered and never make NaN


class EncodedSource(NamedTuple):
    """What the decoder reads at every step, computed once per source.

    Attributes:
        key_values: L cross-attention tensors (B, 2, H, S, Dh).
        mask: bool (B, S), True at real source tokens.
    """

    key_values: tuple
    mask: tf.Tensor


def encode_source(model, source_ids) -> EncodedSource:
    """Runs the encoder once and projects its outputs for every decoder layer."""
    outputs, mask = model.encode(source_ids)  # (B, S, D), (B, S)
    return EncodedSource(model.encoder_key_values(outputs), mask)


def repeat_source(source: EncodedSource, times) -> EncodedSource:
    """Each row repeated `times` times in place (row b -> rows b·times ... b·times + times-1)."""
    return EncodedSource(tuple(tf.repeat(kv, times, axis=0) for kv in source.key_values),
                         tf.repeat(source.mask, times, axis=0))


def output_limits(source_ids, max_length: int, max_len_a=MAX_LEN_A, max_len_b=MAX_LEN_B,
                  pad_id: int = PAD_ID):
    """int32 (B,): the most tokens (EOS included) each source may produce (see the rules)."""
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(source_ids, pad_id), tf.float32), axis=1)
    limits = tf.math.ceil(tf.cast(max_len_a, tf.float32) * lengths) \
        + tf.cast(max_len_b, tf.float32)
    return tf.cast(tf.clip_by_value(limits, 1.0, float(max_length)), tf.int32)


def next_log_probs(model, tokens, cache, index, source: EncodedSource, limits,
                   eos_id: int = EOS_ID, pad_id: int = PAD_ID, bos_id: int = BOS_ID):
    """One decoder step for every row: (log-probabilities (N, V) float32, cache).

    Args:
        tokens: int32 (N,), the tokens at output position `index` - 1 (BOS at index 0).
        cache: the decoder's self-attention cache, L × (N, 2, H, T_max, Dh).
        index: int32 scalar, the output position being chosen (its cache slot is `index`).
        source: the `EncodedSource` of the N rows.
        limits: int32 (N,) from `output_limits`: at index limit - 1 only EOS is allowed.
    """
    logits, cache = model.decode_with_cache(
        tokens[:, None], cache, index, source_mask=source.mask,
        encoder_key_values=source.key_values)                             # (N, 1, V)
    log_probs = tf.nn.log_softmax(tf.cast(logits[:, 0], tf.float32))     # (N, V)
    vocab = tf.range(tf.shape(log_probs)[1])[None, :]                     # (1, V)
    never = (vocab == pad_id) | (vocab == bos_id)                         # (1, V)
    last = (index >= limits - 1)[:, None]                                 # (N, 1)
    blocked = never | (last & (vocab != eos_id))                          # (N, V)
    return tf.where(blocked, NEG_INF, log_probs), cache


def length_penalty(length, alpha):
    """GNMT's ((5 + |Y|) / 6)^α (Wu et al. 2016, §7): scores are divided by it, so that with
    α > 0 longer outputs are not punished for having more (negative) log-probabilities to
    sum. α = 0 ranks by the plain log-probability."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, tf.cast(alpha, tf.float32))


def greedy_search(model, source_ids, max_len_a=MAX_LEN_A, max_len_b=MAX_LEN_B,
                  eos_id: int = EOS_ID, pad_id: int = PAD_ID, bos_id: int = BOS_ID):
    """The most likely token at every step, until EOS.

    Args:
        model: a built `Transformer`.
        source_ids: int32 (B, S), PAD-padded.
        max_len_a, max_len_b: the output limit (see the module docstring).

    Returns:
        (tokens int32 (B, T_max): the outputs, EOS included, PAD after it;
         scores float32 (B,): each output's log-probability).
    """
    max_length = model.maximum_position_encoding
    batch = tf.shape(source_ids)[0]
    source = encode_source(model, source_ids)
    limits = output_limits(source_ids, max_length, max_len_a, max_len_b, pad_id)
    cache = model.init_cache(batch, max_length)
    tokens = tf.fill([batch, max_length], tf.constant(pad_id, tf.int32))  # (B, T_max)
    positions = tf.range(max_length)[None, :]                             # (1, T_max)

    def condition(index, previous, tokens, scores, done, cache):
        return (index < max_length) & ~tf.reduce_all(done)

    def body(index, previous, tokens, scores, done, cache):
        log_probs, cache = next_log_probs(model, previous, cache, index, source, limits,
                                          eos_id, pad_id, bos_id)  # (B, V)
        token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)    # (B,)
        token_score = tf.reduce_max(log_probs, axis=-1)
        token = tf.where(done, pad_id, token)
        scores = scores + tf.where(done, 0.0, token_score)
        tokens = tf.where(positions == index, token[:, None], tokens)  # one-hot write
        return index + 1, token, tokens, scores, done | (token == eos_id), cache

    start = (tf.constant(0), tf.fill([batch], tf.constant(bos_id, tf.int32)), tokens,
             tf.zeros([batch], tf.float32), tf.zeros([batch], tf.bool), cache)
    _, _, tokens, scores, _, _ = tf.while_loop(condition, body, start)
    return tokens, scores


def full_recompute_greedy(model, source_ids, max_len_a=MAX_LEN_A, max_len_b=MAX_LEN_B,
                          eos_id: int = EOS_ID, pad_id: int = PAD_ID, bos_id: int = BOS_ID):
    """The reference: greedy search without any cache, in Python (eager).

    Each step runs the encoder and the whole decoder again on the source and every output
    token so far (what the design document's §5.2 loop does). Same rules, same tokens as
    `greedy_search`; for tests and for measuring what the caches save.
    """
    max_length = model.maximum_position_encoding
    limits = output_limits(source_ids, max_length, max_len_a, max_len_b, pad_id).numpy()
    batch = int(source_ids.shape[0])
    outputs = [[bos_id] for _ in range(batch)]
    done = [False] * batch
    for index in range(max_length):
        if all(done):
            break
        logits = model((source_ids, tf.constant(outputs, tf.int32)))[:, -1]  # (B, V)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32)).numpy()
        for b in range(batch):
            if done[b]:
                outputs[b].append(pad_id)
                continue
            log_probs[b, [pad_id, bos_id]] = -math.inf
            if index >= limits[b] - 1:
                token = eos_id
            else:
                token = int(log_probs[b].argmax())
            outputs[b].append(token)
            done[b] = token == eos_id
    rows = [row[1:] + [pad_id] * (max_length - len(row) + 1) for row in outputs]
    return tf.constant(rows, tf.int32)
