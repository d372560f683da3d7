"""`Translator`: greedy and beam-search translation from Python, compiled once per shape.

    translator = Translator(model, tokenizer)                 # compile="xla" by default
    translator.translate(["Ich habe Hunger."])                # greedy
    translator.translate(["Ich habe Hunger."], beam_size=4, length_penalty=0.6)

Sources are sorted by length and decoded in batches of `batch_size` rows, each padded to a
multiple of `SOURCE_LENGTH_STEP` tokens (and the last batch filled with empty rows), so that a
whole test set compiles a handful of shapes, not one per batch. Outputs come back in the
order given. A source longer than the model's `max_length` keeps its first `max_length`
tokens (with a warning).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from llm_tf._validation import is_int, is_number
from llm_tf.generation.beam import beam_search, beam_slots
from llm_tf.generation.seq2seq import MAX_LEN_A, MAX_LEN_B, greedy_search
from llm_tf.tokenizers.base import EOS_ID, PAD_ID

COMPILE_MODES = ("graph", "xla")
SOURCE_LENGTH_STEP = 16
DEFAULT_BATCH_SIZE = 64
DEFAULT_LENGTH_PENALTY = 0.6  # GNMT's α (Wu et al. 2016 found 0.6–0.7 best on WMT En–De)


def check_search(beam_size, length_penalty) -> None:
    """`ValueError`s naming the argument: beam_size an integer >= 1, length_penalty >= 0."""
    if not (is_int(beam_size) and beam_size >= 1):
        raise ValueError(f"`beam_size` must be an integer >= 1. Received: beam_size={beam_size!r}")
    if not (is_number(length_penalty) and length_penalty >= 0):
        raise ValueError("`length_penalty` must be a number >= 0 (0 ranks by log-probability). "
                         f"Received: length_penalty={length_penalty!r}")


class Translator:
    """Translates with a `Transformer` (encoder once, cached decoder steps, one while loop).

    Args:
        model: a built (or buildable) `Transformer`.
        tokenizer: the run's tokenizer (both languages), or None for `translate_ids` only.
        compile: "xla" (default) or "graph".
        batch_size: rows per compiled call.
        max_len_a, max_len_b: the output limit, min(max_length, ⌈a·|source|⌉ + b) tokens.
    """

    def __init__(self, model, tokenizer=None, compile: str = "xla",
                 batch_size: int = DEFAULT_BATCH_SIZE, max_len_a: float = MAX_LEN_A,
                 max_len_b: int = MAX_LEN_B):
        if compile not in COMPILE_MODES:
            raise ValueError(f"`compile` must be one of {COMPILE_MODES}. "
                             f"Received: compile={compile!r}")
        if not (is_int(batch_size) and batch_size >= 1):
            raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
        if not model.built:
            model.build()
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = model.maximum_position_encoding
        self.max_len_a, self.max_len_b = float(max_len_a), int(max_len_b)
        jit = compile == "xla"
        ids = tf.TensorSpec((None, None), tf.int32)
        scalar = lambda dtype: tf.TensorSpec((), dtype)  # noqa: E731
        # (source ids (B, S)) -> (tokens (B, T_max), scores (B,))
        self.greedy = tf.function(
            lambda source_ids: greedy_search(model, source_ids, self.max_len_a, self.max_len_b),
            jit_compile=jit, autograph=False, input_signature=[ids])
        # (source ids (B, S), beam_slots(K), α) -> (tokens (B, T_max), scores (B,))
        self.beam = tf.function(
            lambda source_ids, slots, alpha: beam_search(
                model, source_ids, slots, alpha, self.max_len_a, self.max_len_b),
            jit_compile=jit, autograph=False,
            input_signature=[ids, tf.TensorSpec((None,), tf.bool), scalar(tf.float32)])

    def search(self, source_ids, beam_size: int = 1,
               length_penalty: float = DEFAULT_LENGTH_PENALTY):
        """One compiled search on a padded batch: (tokens (B, T_max), scores (B,)) tensors.
        Beam size 1 runs greedy search (the same tokens as a beam of 1, less work)."""
        source_ids = tf.convert_to_tensor(source_ids, tf.int32)
        if beam_size == 1:
            return self.greedy(source_ids)
        return self.beam(source_ids, beam_slots(beam_size), tf.constant(length_penalty,
                                                                         tf.float32))

    def translate_ids(self, source_ids: Sequence[Sequence[int]], beam_size: int = 1,
                      length_penalty: float = DEFAULT_LENGTH_PENALTY) -> list[list[int]]:
        """Output ids for each source (lists of ints), without EOS."""
        check_search(beam_size, length_penalty)
        rows = [list(map(int, row)) for row in source_ids]
        long = [i for i, row in enumerate(rows) if len(row) > self.max_length]
        if long:
            warnings.warn(f"Source(s) {long[:10]} cut to max_length={self.max_length} tokens.",
                          stacklevel=2)
        rows = [row[:self.max_length] for row in rows]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        outputs: list = [None] * len(rows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            longest = max(1, max(len(rows[i]) for i in chunk))
            width = min(self.max_length, -(-longest // SOURCE_LENGTH_STEP) * SOURCE_LENGTH_STEP)
            batch = np.zeros((self.batch_size, width), np.int32)  # empty rows fill the batch
            for j, i in enumerate(chunk):
                batch[j, :len(rows[i])] = rows[i]
            tokens, _ = self.search(batch, beam_size, length_penalty)
            for j, i in enumerate(chunk):
                outputs[i] = _until_eos(tokens[j].numpy(), self.model.pad_id)
        return outputs

    def translate(self, texts, beam_size: int = 1,
                  length_penalty: float = DEFAULT_LENGTH_PENALTY):
        """Translations of `texts`: a str for a str, a list for a list."""
        if self.tokenizer is None:
            raise ValueError("This Translator has no tokenizer: pass `tokenizer=`, or use "
                             "`translate_ids`.")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"`texts` must be a string or a list of strings. Received: {texts!r}")
        if not texts:
            return []
        ids = self.tokenizer.encode(tf.constant(texts)).to_list()  # B lists of ids
        outputs = self.translate_ids(ids, beam_size, length_penalty)
        decoded = [self.decode(row) for row in outputs]
        return decoded[0] if single else decoded

    def decode(self, ids) -> str:
        text = self.tokenizer.decode(tf.constant(list(ids), tf.int32))
        return text.numpy().decode("utf-8", errors="replace")


def _until_eos(row: np.ndarray, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> list[int]:
    """An output row's ids before its EOS, PAD dropped."""
    row = row.tolist()
    row = row[:row.index(eos_id)] if eos_id in row else row
    return [t for t in row if t != pad_id]


# Validation sources translated (greedily) in the text printed at each evaluation.
SAMPLE_SOURCES = 2


def translation_sampler(val_pairs):
    """What `llm_tf.translation.train_translation(sampler=...)` takes: given the validation
    pairs, `(model, tokenizer) -> sample(step)`, where `sample(step)` shows the greedy
    translations of the first `SAMPLE_SOURCES` validation sources next to their references."""
    pairs = list(val_pairs)[:SAMPLE_SOURCES]

    def make(model, tokenizer):
        translator = Translator(model, tokenizer, compile="graph", batch_size=len(pairs) or 1)

        def sample(step: int) -> str:
            hypotheses = translator.translate([source for source, _ in pairs])
            lines = [f"{source}\n  → {hypothesis}\n  (reference: {target})"
                     for (source, target), hypothesis in zip(pairs, hypotheses)]
            return f"----- translations at step {step} -----\n" + "\n".join(lines) + "\n-----"

        return sample

    return make
