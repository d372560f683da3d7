"""Decoding a Transformer: greedy = beam 1, beam search finds the best output when it can see
all of them, cached = uncached, XLA = graph, cross-attention keys/values projected once."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from llm_tf.config import ModelConfig
from llm_tf.generation.beam import beam_search, beam_slots
from llm_tf.generation.seq2seq import (
    full_recompute_greedy,
    greedy_search,
    length_penalty,
    output_limits,
)
from llm_tf.generation.translator import Translator, check_search
from llm_tf.models import Transformer
from llm_tf.tokenizers import BOS_ID, EOS_ID, PAD_ID

CONFIG = ModelConfig(vocab_size=24, d_model=32, num_heads=4, num_layers=2, dff=64,
                     max_length=16, dropout=0.0, norm_placement="pre",
                     position_encoding="sinusoidal", scale_embeddings=True, activation="relu")
SOURCES = tf.constant([[5, 6, 7, 8, 9, 0], [10, 11, 0, 0, 0, 0], [12, 13, 14, 15, 16, 17],
                       [4, 0, 0, 0, 0, 0]])


def scaled_model(config, scale, seed=0):
    """A random model with its weights multiplied by `scale`: sharper (less uniform) logits,
    so that decoding choices are far from ties."""
    tf.keras.utils.set_random_seed(seed)
    model = Transformer.from_model_config(config)
    model.build()
    model.set_weights([w * scale if w.ndim >= 2 else w for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def model():
    return scaled_model(CONFIG, 3.0)


def test_cross_attention_keys_and_values_projected_once_give_the_same_logits(model):
    target = tf.constant([[BOS_ID, 5, 6, 7]] * 4)
    full = model((SOURCES, target)).numpy()
    memory, mask = model.encode(SOURCES)
    key_values = model.encoder_key_values(memory)
    assert len(key_values) == 2 and key_values[0].shape == (4, 2, 4, 6, 8)  # L × (B, 2, H, S, Dh)
    cache = model.init_cache(4, 4)
    for t in range(4):
        logits, cache = model.decode_with_cache(target[:, t:t + 1], cache, t, source_mask=mask,
                                                encoder_key_values=key_values)
        np.testing.assert_allclose(logits.numpy()[:, 0], full[:, t], atol=1e-4)


def test_cached_greedy_equals_the_full_recompute_loop(model):
    cached, scores = greedy_search(model, SOURCES)
    reference = full_recompute_greedy(model, SOURCES)
    np.testing.assert_array_equal(cached.numpy(), reference.numpy())
    outputs = cached.numpy()
    assert (outputs != PAD_ID).sum(axis=1).min() >= 2  # not trivially EOS at once
    assert len({tuple(row) for row in outputs}) >= 3
    assert np.all(scores.numpy() < 0)


def test_outputs_stop_at_eos_or_at_the_source_dependent_limit(model):
    tokens, _ = greedy_search(model, SOURCES, max_len_a=1.0, max_len_b=2)
    limits = output_limits(SOURCES, CONFIG.max_length, 1.0, 2).numpy()
    np.testing.assert_array_equal(limits, [7, 4, 8, 3])
    for row, limit in zip(tokens.numpy(), limits):
        ends = np.flatnonzero(row == EOS_ID)
        assert ends.size == 1 and ends[0] < limit  # exactly one EOS, within the limit
        assert (row[ends[0] + 1:] == PAD_ID).all() and BOS_ID not in row


def test_beam_of_one_is_greedy_token_for_token(model):
    greedy, _ = tf.function(lambda s: greedy_search(model, s))(SOURCES)
    beam = tf.function(lambda s, alpha: beam_search(model, s, beam_slots(1), alpha))
    for alpha in (0.0, 0.6, 2.0):
        np.testing.assert_array_equal(beam(SOURCES, tf.constant(alpha))[0].numpy(),
                                      greedy.numpy())


def sequence_log_prob(model, source, output):
    """log P(output | source) by one uncached forward pass (output ends with EOS)."""
    target_in = tf.constant([[BOS_ID] + output[:-1]])
    log_probs = tf.nn.log_softmax(model((source[None], target_in))[0]).numpy()  # (t, V)
    return float(sum(log_probs[i, token] for i, token in enumerate(output)))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_large_beam_finds_the_best_scoring_output_of_all(alpha):
    """Vocabulary 6 (PAD, UNK, BOS, EOS, 4, 5): with outputs of at most 4 tokens there are
    1 + 3 + 9 + 27 = 40 possible outputs (PAD and BOS are never emitted). Score them all by
    full forward passes and compare with beam search."""
    config = CONFIG.replace(vocab_size=6, max_length=8)
    model = scaled_model(config, 4.0, seed=3)
    source = tf.constant([5, 4, 5, 1])
    emitted = [1, 4, 5]  # UNK and the two real tokens
    candidates = [list(body) + [EOS_ID] for n in range(4)
                  for body in itertools.product(emitted, repeat=n)]
    assert len(candidates) == 40
    scores = [sequence_log_prob(model, source, c) / float(length_penalty(len(c), alpha))
              for c in candidates]
    best = int(np.argmax(scores))
    ranked = sorted(scores, reverse=True)
    assert ranked[0] - ranked[1] > 1e-3  # a unique best (else the test proves nothing)

    # max_len_a = 0, max_len_b = 4: at most 4 output tokens. Beam 64 >= every candidate
    # count of a step (at most 3^2 · 4 = 36), so nothing is pruned.
    tokens, score = beam_search(model, source[None], beam_slots(64), alpha, max_len_a=0.0,
                                max_len_b=4)
    row = tokens.numpy()[0].tolist()
    found = row[:row.index(EOS_ID) + 1]
    assert found == candidates[best]
    assert math.isclose(float(score[0]), scores[best], abs_tol=1e-4)


def test_xla_and_graph_decoding_give_the_same_outputs(model):
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17], [4]]
    xla = Translator(model, compile="xla", batch_size=4)
    graph = Translator(model, compile="graph", batch_size=4)
    for beam_size in (1, 3):
        assert xla.translate_ids(sources, beam_size) == graph.translate_ids(sources, beam_size)
    # The batch layout (sorting by length, padding, empty filler rows) changes nothing.
    one_by_one = [xla.translate_ids([s], 3)[0] for s in sources]
    assert one_by_one == xla.translate_ids(sources, 3)


@pytest.mark.parametrize("beam_size, penalty, message", [
    (0, 0.6, "`beam_size` must be an integer >= 1"),
    (2.5, 0.6, "`beam_size` must be an integer >= 1"),
    (2, -1.0, "`length_penalty` must be a number >= 0"),
])
def test_bad_search_arguments_name_the_argument(beam_size, penalty, message):
    with pytest.raises(ValueError, match=message):
        check_search(beam_size, penalty)
