"""Prompt/response pairs for instruction tuning (§6.3 question answering, §6.4 chat).

`prompt<TAB>response` lines (`llm_tf.data.tsv`). Each example becomes one token sequence,
the prompt inside the run's template (`FinetuneConfig.prompt_template`, e.g.
"Q: {prompt}\\nA: ") and the response after it, ended by EOS:

    tokens = encode(template(prompt)) + encode(response) + [EOS]
    x = tokens[:-1]        y = tokens[1:], with IGNORE_LABEL wherever y is a prompt token

so the loss, and every gradient, comes from the response and its EOS only: the model learns
to answer and to stop, not to write prompts. The two parts are tokenized separately,
exactly as generation sees them (the prompt is encoded alone, the response is generated).

**Length.** A sequence longer than T + 1 tokens loses the start of its prompt (generation
also cuts prompts from the left, docs/generation.md); a response (with EOS) that alone
fills the context keeps the prompt's last token and is cut at the end. Both are counted.
Shorter sequences are right-padded: PAD inputs, IGNORE_LABEL targets.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from llm_tf.data.tsv import read_pairs
from llm_tf.tokenizers.base import IGNORE_LABEL


@dataclasses.dataclass(frozen=True)
class InstructionPairs:
    prompts: tuple
    responses: tuple
    source: str

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices) -> "InstructionPairs":
        return InstructionPairs(tuple(self.prompts[i] for i in indices),
                                tuple(self.responses[i] for i in indices), self.source)


@dataclasses.dataclass(frozen=True)
class EncodedInstructions:
    """x: int32 (N, T) inputs; y: int32 (N, T) targets, IGNORE_LABEL on prompt and padding
    positions; prompts_cut / responses_cut: how many examples lost prompt / response tokens;
    response_tokens: labelled positions in all (responses and their EOS)."""

    x: np.ndarray
    y: np.ndarray
    prompts_cut: int
    responses_cut: int
    response_tokens: int


def read_instructions(path) -> InstructionPairs:
    """The `prompt<TAB>response` lines of `path` (errors name the line: `read_pairs`)."""
    pairs = read_pairs(path, "prompt", "response")
    return InstructionPairs(tuple(p.first for p in pairs), tuple(p.second for p in pairs),
                            str(path))


def _encode_all(tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    ids = tokenizer.encode(tf.constant(list(texts)))  # (N, (n))
    return [np.asarray(row, np.int32) for row in ids.to_list()]


def encode_instructions(tokenizer, pairs: InstructionPairs, format_prompt: Callable[[str], str],
                        length: int) -> EncodedInstructions:
    """`pairs` as (x, y) rows of `length` T (see the module docstring).

    Args:
        tokenizer: the pre-trained run's tokenizer.
        pairs: the examples.
        format_prompt: prompt -> the text the model reads before the response
            (`FinetuneConfig.format_prompt`).
        length: T, the context.
    """
    T = length
    prompts = _encode_all(tokenizer, [format_prompt(p) for p in pairs.prompts])
    responses = _encode_all(tokenizer, pairs.responses)
    x = np.full((len(pairs), T), tokenizer.pad_id, np.int32)
    y = np.full((len(pairs), T), IGNORE_LABEL, np.int32)
    prompts_cut = responses_cut = 0
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        answer = np.append(response, tokenizer.eos_id).astype(np.int32)
        if len(answer) > T:  # the response alone fills the context: keep one prompt token
            answer, responses_cut = answer[:T], responses_cut + 1
        room = T + 1 - len(answer)  # prompt tokens that fit (>= 1)
        if len(prompt) > room:
            prompt, prompts_cut = prompt[-room:], prompts_cut + 1
        if len(prompt) == 0:  # an empty formatted prompt: nothing to predict the answer from
            prompt = np.array([tokenizer.bos_id], np.int32)
        tokens = np.concatenate([prompt, answer])  # (n,), n <= T + 1
        n = len(tokens) - 1
        x[i, :n] = tokens[:-1]
        y[i, :n] = tokens[1:]
        y[i, :len(prompt) - 1] = IGNORE_LABEL  # targets that are prompt tokens
    return EncodedInstructions(x, y, prompts_cut, responses_cut, int((y >= 0).sum()))
