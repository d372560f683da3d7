"""Beam search for the encoder–decoder `Transformer`, in one `tf.while_loop` that XLA compiles.

Per source, K hypotheses are "alive". At each step every alive hypothesis is extended by every
token, and of the K·V candidates the 2K best by log-probability are kept (2K, so that K of
them are left to stay alive even if up to K of them end here):

* a candidate among the **K best** that ends with EOS is *finished*: it is set aside with its
  score log P(Y) / lp(|Y|), lp the GNMT length penalty ((5 + |Y|) / 6)^α (Wu et al. 2016),
  |Y| counting EOS; the K best finished hypotheses are kept;
* the K best candidates that do not end with EOS stay alive;
* a source is done when it has K finished hypotheses **and** its best alive hypothesis, scored
  as if it ended now, log P / lp(its length), does not beat the worst of them (Hugging Face's
  default, `early_stopping=False`), or when its output limit is reached (at the last allowed
  position only EOS is allowed, so everything alive finishes then); its answer is its best
  finished hypothesis. Stopping at the K-th finished hypothesis alone (fairseq's rule) can
  end the search while a longer hypothesis, which the length penalty favours, would still win.

Beam size 1 is then greedy search, token for token: the single candidate among the "K best"
is the argmax; if it is EOS the source is done (the alive runner-up has a lower log P at the
same length, so it cannot beat it), otherwise it stays alive
(tests/test_translation_decode.py checks this, and that a large beam finds the best-scoring
output of all on a model small enough to enumerate them).

Static shapes: sequences (B, K, T_max), scores (B, K), the decoder cache L × (B·K, 2, H,
T_max, Dh), reordered by a gather after each step (the alive hypotheses of the next step
descend from any of this step's). The encoder runs once per source; its cross-attention keys
and values are repeated K times, once, and never reordered (every hypothesis of a source reads
the same ones). The beam size enters as the static length of a `beam_slots` tensor, so one
compiled function serves every beam size, compiling once for each (XLA needs `top_k`'s k to be
known when it compiles).
"""

from __future__ import annotations

import tensorflow as tf

from llm_tf.generation.seq2seq import (
    MAX_LEN_A,
    MAX_LEN_B,
    NEG_INF,
    encode_source,
    length_penalty,
    next_log_probs,
    output_limits,
    repeat_source,
)
from llm_tf.tokenizers.base import BOS_ID, EOS_ID, PAD_ID

# Scores below this are hypotheses that do not exist (an empty beam slot, a blocked token).
_ABSENT = NEG_INF / 2


def beam_slots(beam_size) -> tf.Tensor:
    """A (beam_size,) tensor whose *length* is the beam size (see the module docstring)."""
    return tf.zeros([beam_size], tf.bool)


def beam_search(model, source_ids, slots, alpha=0.6, max_len_a=MAX_LEN_A, max_len_b=MAX_LEN_B,
                eos_id: int = EOS_ID, pad_id: int = PAD_ID, bos_id: int = BOS_ID):
    """The best output of each source by beam search (see the module docstring).

    Args:
        model: a built `Transformer`.
        source_ids: int32 (B, S), PAD-padded.
        slots: `beam_slots(K)`: K = its length.
        alpha: α of the length penalty (0: rank by log-probability).
        max_len_a, max_len_b: the output limit (`llm_tf.generation.seq2seq`).

    Returns:
        (tokens int32 (B, T_max): the best finished output, EOS included, PAD after;
         scores float32 (B,): its log P(Y) / lp(|Y|)).
    """
    K = tf.shape(slots)[0]
    B = tf.shape(source_ids)[0]
    T_max = model.maximum_position_encoding
    limits = output_limits(source_ids, T_max, max_len_a, max_len_b, pad_id)  # (B,)
    source = repeat_source(encode_source(model, source_ids), K)              # rows b·K + k
    row_limits = tf.repeat(limits, K)                                        # (B·K,)
    cache = model.init_cache(B * K, T_max)
    positions = tf.range(T_max)[None, None, :]                               # (1, 1, T_max)
    batch_rows = tf.range(B)[:, None] * K                                    # (B, 1)

    # Only hypothesis 0 of each source exists at the start: the others would repeat it.
    alive_scores = tf.where(tf.range(K)[None, :] == 0, 0.0, NEG_INF)         # (B, K)
    alive_scores = tf.tile(alive_scores, [B, 1])
    alive = tf.fill([B, K, T_max], tf.constant(pad_id, tf.int32))            # (B, K, T_max)
    finished = tf.fill([B, K, T_max], tf.constant(pad_id, tf.int32))
    finished_scores = tf.fill([B, K], tf.constant(NEG_INF, tf.float32))
    done = tf.zeros([B], tf.bool)

    def condition(index, alive, alive_scores, finished, finished_scores, done, cache):
        return (index < T_max) & ~tf.reduce_all(done)

    def body(index, alive, alive_scores, finished, finished_scores, done, cache):
        previous = tf.gather(alive, tf.maximum(index - 1, 0), axis=2)        # (B, K)
        previous = tf.where(index == 0, bos_id, previous)
        log_probs, cache = next_log_probs(model, tf.reshape(previous, [-1]), cache, index,
                                          source, row_limits, eos_id, pad_id, bos_id)
        V = tf.shape(log_probs)[1]
        candidates = alive_scores[:, :, None] + tf.reshape(log_probs, [B, K, V])  # (B, K, V)
        scores, flat = tf.math.top_k(tf.reshape(candidates, [B, K * V]), k=2 * K)  # (B, 2K)
        origin, token = flat // V, flat % V                                  # (B, 2K)
        sequences = tf.gather(alive, origin, batch_dims=1)                   # (B, 2K, T_max)
        sequences = tf.where(positions == index, token[:, :, None], sequences)
        exists = scores > _ABSENT
        ends = (token == eos_id) & exists

        # Finished: EOS among the K best candidates, scored with the length penalty.
        in_top_k = tf.range(2 * K)[None, :] < K
        new_scores = tf.where(ends & in_top_k, scores / length_penalty(index + 1, alpha),
                              NEG_INF)
        pool_scores = tf.concat([finished_scores, new_scores], axis=1)       # (B, 3K)
        pool = tf.concat([finished, sequences], axis=1)                      # (B, 3K, T_max)
        best_scores, best = tf.math.top_k(pool_scores, k=K)
        new_finished = tf.gather(pool, best, batch_dims=1)

        # Alive: the K best candidates that did not end.
        open_scores = tf.where(ends, NEG_INF, scores)
        next_scores, keep = tf.math.top_k(open_scores, k=K)                  # (B, K)
        next_alive = tf.gather(sequences, keep, batch_dims=1)
        rows = tf.reshape(batch_rows + tf.gather(origin, keep, batch_dims=1), [-1])  # (B·K,)
        cache = tuple(tf.gather(layer, rows) for layer in cache)

        # A source that was done keeps its answer (its rows still run, unread).
        keep_old = done[:, None]
        finished_scores = tf.where(keep_old, finished_scores, best_scores)
        finished = tf.where(keep_old[:, :, None], finished, new_finished)
        count = tf.reduce_sum(tf.cast(finished_scores > _ABSENT, tf.int32), axis=1)
        # top_k keeps both sorted: alive 0 is the best, finished K-1 the worst.
        settled = next_scores[:, 0] / length_penalty(index + 1, alpha) <= finished_scores[:, -1]
        done = done | ((count >= K) & settled) | (index + 1 >= limits) | \
            tf.reduce_all(next_scores <= _ABSENT, axis=1)
        # Static shapes for the loop (gathers by computed indices lose them).
        return (index + 1, tf.ensure_shape(next_alive, alive_shape),
                tf.ensure_shape(next_scores, scores_shape),
                tf.ensure_shape(finished, alive_shape),
                tf.ensure_shape(finished_scores, scores_shape), done,
                tuple(tf.ensure_shape(layer, shape) for layer, shape in zip(cache, cache_shapes)))

    alive_shape, scores_shape = alive.shape, alive_scores.shape
    cache_shapes = [layer.shape for layer in cache]
    start = (tf.constant(0), alive, alive_scores, finished, finished_scores, done, cache)
    _, _, _, finished, finished_scores, _, _ = tf.while_loop(condition, body, start)
    return finished[:, 0], finished_scores[:, 0]  # top_k keeps them sorted: 0 is the best
