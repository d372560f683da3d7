"""The cached decode loop: equal to full recompute, batched = per prompt, policies, seeds."""

import numpy as np
import pytest
import tensorflow as tf

from llm_tf import saving
from llm_tf.config import ModelConfig
from llm_tf.generation import Generator, Sampling, generate_reference
from llm_tf.generation.decode import BOS_ID, EOS_ID, PAD_ID, prepare_prompts, ragged_from_lists
from llm_tf.models import TransformerLM
from llm_tf.tokenizers import train_tokenizer

MAX_LENGTH = 32
TEXT = "hello world, héllo wörld — 你好世界, ça va? 🙂 the quick brown fox"
# Prompts of different lengths, one empty (starts from BOS); ids 4.. are real tokens.
PROMPTS = [[5, 6, 7, 8, 9], [10], [], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]


def scrambled_model(vocab_size, seed=2, **overrides):
    """A tiny model with N(0, 0.5) weights: untrained models at the default 0.02
    repeat one token; larger weights make varied, input-dependent greedy outputs."""
    config = ModelConfig(vocab_size=vocab_size, d_model=32, num_heads=4, num_layers=2, dff=64,
                         max_length=MAX_LENGTH, dropout=0.0, **overrides)
    model = TransformerLM(config)
    model.build()
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if not any(part in variable.path for part in ("gamma", "beta", "bias")):
            variable.assign(rng.normal(0.0, 0.5, variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("char", TEXT)


@pytest.fixture(scope="module")
def model(tokenizer):
    return scrambled_model(tokenizer.vocab_size)


@pytest.fixture(scope="module")
def xla(model, tokenizer):
    return Generator(model, tokenizer, compile="xla")


@pytest.fixture(scope="module")
def graph(model, tokenizer):
    return Generator(model, tokenizer, compile="graph")


@pytest.fixture(scope="module")
def never_stops(model):
    """Greedy without EOS: every row runs to max_new_tokens."""
    return Generator(model, compile="graph", eos_id=-1)


def test_the_fixture_model_makes_varied_text(never_stops):
    ids = never_stops.generate_ids(PROMPTS, 12)
    assert all(len(set(row)) >= 3 for row in ids), ids
    assert len({tuple(row) for row in ids}) == len(PROMPTS)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_greedy_with_cache_equals_full_recompute_token_for_token(model, mode, xla, graph):
    generator = {"xla": xla, "graph": graph}.get(mode) or Generator(model, compile="eager")
    expected = generate_reference(model, PROMPTS, 12)
    assert generator.generate_ids(PROMPTS, 12) == expected
    assert sum(map(len, expected)) > 20  # not all rows stopped at once


def test_seeded_sampling_with_cache_equals_full_recompute(model, xla):
    for kwargs in (dict(temperature=1.0), dict(temperature=0.7, top_k=5),
                   dict(temperature=1.3, top_p=0.8), dict(temperature=1.0, top_k=8, top_p=0.9)):
        expected = generate_reference(model, PROMPTS, 12, Sampling(seed=42, **kwargs))
        assert xla.generate_ids(PROMPTS, 12, seed=42, **kwargs) == expected, kwargs


@pytest.mark.parametrize("position_encoding, norm_placement",
                         [("rope", "pre"), ("sinusoidal", "post")])
def test_cache_equals_recompute_for_other_positions_and_norms(position_encoding, norm_placement):
    model = scrambled_model(40, seed=1, position_encoding=position_encoding,
                            norm_placement=norm_placement)
    generator = Generator(model, compile="graph", eos_id=-1)
    batched = generator.generate_ids(PROMPTS, 8)
    assert batched == generate_reference(model, PROMPTS, 8, eos_id=-1)
    assert batched == [generator.generate_ids([prompt], 8)[0] for prompt in PROMPTS]


def test_prefill_in_small_chunks_gives_the_same_tokens(model):
    # chunk 12 over 32 slots: chunks start at 0, 12 and (shifted to end at 32) 20.
    generator = Generator(model, compile="graph", eos_id=-1, prefill_chunk=12)
    prompts = [list(range(4, 34)), [5, 6, 7], [], list(range(10, 23))]
    assert generator.generate_ids(prompts, 2) == generate_reference(model, prompts, 2, eos_id=-1)
    with pytest.warns(UserWarning, match="cut from the left to 24 tokens"):
        assert generator.generate_ids(prompts, 8) == generate_reference(model, prompts, 8,
                                                                        eos_id=-1)


def test_the_cache_is_a_tuple_of_per_layer_tensors(model):
    # The decode loop keeps one cache tensor per layer (in-place updates under XLA).
    ids = tf.constant([[5, 6, 7], [8, 9, 10]])
    cache = model.init_cache(2)
    c = model.config
    assert isinstance(cache, tuple) and len(cache) == c.num_layers
    assert all(layer.shape == (2, 2, c.num_heads, c.max_length, c.head_dim) for layer in cache)
    logits, cache = model.call_with_cache(ids, cache, 0)
    assert isinstance(cache, tuple) and len(cache) == c.num_layers
    np.testing.assert_allclose(logits.numpy(), model(ids).numpy(), atol=1e-5)


def test_a_batch_of_different_lengths_equals_each_prompt_alone(xla):
    batched = xla.generate_ids(PROMPTS, 12)
    assert batched == [xla.generate_ids([prompt], 12)[0] for prompt in PROMPTS]
    # Sampling noise depends on (seed, step, row): row 0 of any batch is the same.
    sampled = xla.generate_ids(PROMPTS, 12, temperature=1.0, seed=5)
    assert sampled[0] == xla.generate_ids(PROMPTS[:1], 12, temperature=1.0, seed=5)[0]


def test_xla_graph_and_eager_agree_on_greedy_and_seeded_samples(model, xla, graph):
    eager = Generator(model, compile="eager")
    for kwargs in (dict(), dict(temperature=1.0, top_k=10, seed=3)):
        expected = xla.generate_ids(PROMPTS, 8, **kwargs)
        assert graph.generate_ids(PROMPTS, 8, **kwargs) == expected
        assert eager.generate_ids(PROMPTS, 8, **kwargs) == expected


def test_same_seed_same_tokens_other_seed_other_tokens(xla):
    first = xla.generate_ids(PROMPTS, 12, temperature=1.0, seed=7)
    assert xla.generate_ids(PROMPTS, 12, temperature=1.0, seed=7) == first
    assert xla.generate_ids(PROMPTS, 12, temperature=1.0, seed=8) != first


def test_seeded_sampling_repeats_after_save_and_load(model, tokenizer, xla, tmp_path):
    saving.save_run(tmp_path / "run", model, tokenizer)
    reloaded = saving.load(tmp_path / "run")
    again = Generator(reloaded.model, reloaded.tokenizer, compile="graph")
    prompts = ["hello", "你好", "", "ça va? 🙂"]
    for kwargs in (dict(), dict(temperature=1.0, top_p=0.9, seed=11)):
        assert again.generate(prompts, 10, **kwargs) == xla.generate(prompts, 10, **kwargs)


def test_rows_stop_at_their_first_eos_then_emit_pad(model, never_stops):
    free = never_stops.generate_ids(PROMPTS, 12)
    eos = free[0][3]  # a token row 0 makes at step 3: call it EOS
    stopping = Generator(model, compile="graph", eos_id=eos)
    ids = stopping.generate_ids(PROMPTS, 12)
    for row, unstopped in zip(ids, free):
        cut = unstopped.index(eos) + 1 if eos in unstopped else len(unstopped)
        assert row == unstopped[:cut]
    assert len(ids[0]) <= 4
    steps = np.stack(list(stopping.stream_ids(PROMPTS, 12)), axis=1)  # (B, steps)
    first = steps[0].tolist().index(eos)
    assert (steps[0, first + 1:] == PAD_ID).all()
    # The loop ends when every row is done, not at max_new_tokens.
    last_eos = max(row.index(eos) + 1 if eos in row else 12 for row in free)
    assert steps.shape[1] == last_eos


def test_max_new_tokens_zero_gives_nothing(xla):
    assert xla.generate_ids(PROMPTS, 0) == [[]] * len(PROMPTS)
    assert xla.generate(["hello", "", "a", "b"], 0) == ["", "", "", ""]


def test_no_prompts_give_no_rows(xla):
    assert xla.generate([], 4) == [] and xla.generate_ids([], 4) == []
    assert list(xla.stream_ids([], 4)) == []


def test_empty_prompt_starts_from_bos(xla, tokenizer):
    ids = xla.generate_ids([[BOS_ID]], 6)
    assert xla.generate_ids([[]], 6) == ids
    text = tokenizer.decode(tf.constant(ids[0], tf.int32)).numpy().decode("utf-8")
    assert xla.generate("", 6) == text != ""


def test_long_prompt_keeps_its_last_tokens_with_a_warning(xla):
    long_prompt = list(range(4, 4 + 30))  # 30 tokens; 32 - 10 = 22 fit
    with pytest.warns(UserWarning, match="cut from the left to 22 tokens"):
        ids = xla.generate_ids([long_prompt, [5], [], [6, 7]], 10)
    assert ids == xla.generate_ids([long_prompt[-22:], [5], [], [6, 7]], 10)


def test_the_whole_context_can_be_generated_from_a_one_token_prompt(never_stops):
    with pytest.warns(UserWarning, match="cut from the left to 1 tokens"):
        ids = never_stops.generate_ids([[5, 6]], MAX_LENGTH - 1)
    assert len(ids[0]) == MAX_LENGTH - 1
    assert ids == never_stops.generate_ids([[6]], MAX_LENGTH - 1)


@pytest.mark.parametrize("max_new_tokens", [-1, MAX_LENGTH, MAX_LENGTH + 50, 2.0, True])
def test_max_new_tokens_beyond_the_context_is_an_error(xla, max_new_tokens):
    with pytest.raises(ValueError, match=r"`max_new_tokens` must be an integer in \[0, 31\]"):
        xla.generate_ids(PROMPTS, max_new_tokens)


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=-1.0), "temperature"), (dict(top_k=-3), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.01), "top_p"), (dict(seed=1.5), "seed")])
def test_bad_sampling_arguments_are_rejected_before_decoding(xla, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        xla.generate(["hello"], 4, **kwargs)


def test_prompt_ids_outside_the_vocabulary_are_rejected(xla):
    vocab_size = xla.model.config.vocab_size
    with pytest.raises(ValueError,
                       match=rf"must be in \[0, {vocab_size}\).*from 5 to {vocab_size}"):
        xla.generate_ids([[5, vocab_size]], 4)
    with pytest.raises(ValueError, match=r"from -1 to 5"):
        xla.generate_ids([[5], [-1]], 4)


def test_prepare_prompts_left_pads_to_a_common_end():
    prepared = prepare_prompts(ragged_from_lists([[5, 6, 7], [8], []]), 8, 3)
    assert int(prepared.prompt_end) == 3
    assert prepared.lengths.numpy().tolist() == [3, 1, 1]
    np.testing.assert_array_equal(prepared.tokens.numpy(), [
        [5, 6, 7, 0, 0, 0, 0, 0],
        [0, 0, 8, 0, 0, 0, 0, 0],
        [0, 0, BOS_ID, 0, 0, 0, 0, 0]])
    assert prepared.truncated.numpy().tolist() == [False, False, False]
    cut = prepare_prompts(ragged_from_lists([[5, 6, 7, 8, 9, 10, 11]]), 8, 3)
    np.testing.assert_array_equal(cut.tokens.numpy()[0, :5], [7, 8, 9, 10, 11])
    assert cut.truncated.numpy().tolist() == [True]


def test_text_generation_and_streaming_agree(xla, graph):
    prompts = ["hello", "你好", "", "ça va? 🙂 wörld"]
    texts = xla.generate(prompts, 10, temperature=0.9, seed=2)
    assert len(set(texts)) == len(prompts) and all(texts)
    # Row 0 alone samples what row 0 of the batch did (the noise is per row).
    alone = xla.generate(prompts[0], 10, temperature=0.9, seed=2)
    assert alone == texts[0]
    pieces = list(xla.stream(prompts[0], 10, temperature=0.9, seed=2))
    assert "".join(pieces) == alone and len(pieces) > 1
    assert "".join(graph.stream("你好", 10)) == graph.generate("你好", 10) != ""
    steps = np.stack(list(graph.stream_ids(PROMPTS, 12)), axis=1)  # (B, steps)
    for row, streamed in zip(graph.generate_ids(PROMPTS, 12), steps.tolist()):
        assert streamed[:len(row)] == row
        assert all(token == PAD_ID for token in streamed[len(row):])


def test_text_api_needs_a_tokenizer_and_strings(model, xla):
    with pytest.raises(ValueError, match="no tokenizer"):
        Generator(model, compile="graph").generate("hello", 3)
    with pytest.raises(ValueError, match="`prompts` must be a string or a list of strings"):
        xla.generate([b"bytes"], 3)
    with pytest.raises(ValueError, match="`compile` must be one of"):
        Generator(model, compile="jit")


def test_special_ids_are_the_tokenizers(tokenizer):
    assert (PAD_ID, BOS_ID, EOS_ID) == (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
