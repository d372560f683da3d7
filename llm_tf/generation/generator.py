"""`Generator`: cached generation from Python, compiled once per model.

    generator = Generator(model, tokenizer)             # compile="xla" by default
    generator.generate("To be", max_new_tokens=50, temperature=0.8, top_k=40, seed=1)
    for piece in generator.stream("To be", max_new_tokens=50):  # text as it is made
        print(piece, end="", flush=True)

Three ways to run the same decode loop (`compile=`), measured side by side by
benchmarks/generate.py:

* "eager": a Python loop over eager cached steps (slow; easy to step through);
* "graph": prefill and `tf.while_loop` in one `tf.function`;
* "xla":   the same function with `jit_compile=True` (the default; fastest on CPU).

`generate` returns only the continuation (the prompt is not repeated); `llm-tf
generate` prints prompt and continuation.
"""

from __future__ import annotations

import warnings
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from llm_tf._validation import is_int
from llm_tf.generation import decode as D
from llm_tf.generation import samplers

COMPILE_MODES = ("eager", "graph", "xla")


class Generator:
    """Generates token ids (and text, given a tokenizer) with a model's KV cache.

    Args:
        model: a built (or buildable) `TransformerLM`.
        tokenizer: optional llm_tf tokenizer, needed for `generate`/`stream` on text.
        compile: "xla" (default), "graph" or "eager".
        eos_id: the id that ends a row; default the tokenizer's `eos_id` (3 for llm_tf's
            own tokenizers, 50256 for GPT-2's). Without a tokenizer, PAD, BOS and EOS are
            llm_tf's 0, 2, 3; pass eos_id=-1 to never stop early.
        prefill_chunk: prompt tokens per model call while filling the cache.

    Policies (docs/generation.md): 0 <= max_new_tokens <= max_length - 1, else a
    `ValueError`; a prompt longer than max_length - max_new_tokens keeps its
    last tokens (with a warning); an empty prompt starts from BOS; a row stops at
    its first EOS (kept in the ids, dropped from text); temperature 0 is greedy;
    seed None draws a fresh seed.
    """

    def __init__(self, model, tokenizer=None, compile: str = "xla",
                 eos_id: Optional[int] = None, prefill_chunk: int = D.PREFILL_CHUNK):
        if compile not in COMPILE_MODES:
            raise ValueError(f"`compile` must be one of {COMPILE_MODES}. "
                             f"Received: compile={compile!r}")
        if not model.built:
            model.build()
        self.model = model
        self.tokenizer = tokenizer
        self.compile = compile
        self.max_length = model.config.max_length
        self.pad_id, self.bos_id, self.eos_id = (
            (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) if tokenizer is not None
            else (D.PAD_ID, D.BOS_ID, D.EOS_ID))
        if eos_id is not None:
            self.eos_id = eos_id
        if not (is_int(prefill_chunk) and prefill_chunk > 0):
            raise ValueError("`prefill_chunk` must be a positive integer. "
                             f"Received: prefill_chunk={prefill_chunk!r}")
        self.prefill_chunk = prefill_chunk
        jit = compile == "xla"
        scalar = lambda dtype: tf.TensorSpec((), dtype)  # noqa: E731
        # The compiled graph-level loop (also called by the SavedModel export):
        # (tokens (B, T_max), lengths (B,), prompt_end, max_new_tokens, temperature,
        #  top_k, top_p, seed) -> tokens (B, T_max).
        self.decode_tokens = tf.function(
            self._decode_graph, jit_compile=jit, autograph=False, input_signature=[
                tf.TensorSpec((None, self.max_length), tf.int32), tf.TensorSpec((None,), tf.int32),
                scalar(tf.int32), scalar(tf.int32), scalar(tf.float32), scalar(tf.int32),
                scalar(tf.float32), scalar(tf.int32)])
        # Prompts to new ids in one graph (prompt layout, loop, slicing), as the
        # SavedModel does it: (prompt ids (B, (n)), max_new_tokens, temperature, top_k,
        # top_p, seed) -> (new ids (B, max_new_tokens), truncated (B,)).
        self.generate_graph = tf.function(
            self._generate_graph, autograph=False, input_signature=[
                tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1,
                                    row_splits_dtype=tf.int64),
                scalar(tf.int32), scalar(tf.float32), scalar(tf.int32), scalar(tf.float32),
                scalar(tf.int32)])
        if compile == "eager":
            self._prefill, self._step = self._prefill_fn, self._step_fn
        else:
            # Control flow is explicit (tf.while_loop, tf.cond): AutoGraph would
            # only add seconds of source transformation to every trace.
            self._prefill = tf.function(self._prefill_fn, jit_compile=jit, autograph=False)
            self._step = tf.function(self._step_fn, jit_compile=jit, autograph=False)

    # -- the compiled pieces -----------------------------------------------------

    def _decode_graph(self, tokens, lengths, prompt_end, max_new_tokens, temperature, top_k,
                      top_p, seed):
        return D.cached_decode(self.model, tokens, lengths, prompt_end, max_new_tokens,
                               temperature, top_k, top_p, seed, self.eos_id, self.pad_id,
                               self.prefill_chunk)

    def _generate_graph(self, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed):
        prepared = D.prepare_prompts(prompt_ids, self.max_length, max_new_tokens, self.bos_id,
                                     self.pad_id)
        tokens = self.decode_tokens(prepared.tokens, prepared.lengths, prepared.prompt_end,
                                    max_new_tokens, temperature, top_k, top_p, seed)
        start = prepared.prompt_end
        return tokens[:, start:start + max_new_tokens], prepared.truncated

    def _prefill_fn(self, tokens, lengths, prompt_end):
        return D.prefill(self.model, tokens, lengths, prompt_end, self.prefill_chunk)

    def _step_fn(self, index, tokens, cache, done, lengths, prompt_end, temperature, top_k,
                 top_p, seed):
        return D.decode_step(D.make_next_fn(self.model, lengths, prompt_end),
                             D.make_sample_fn(temperature, top_k, top_p, seed),
                             index, tokens, cache, done, prompt_end, self.eos_id, self.pad_id)

    # -- token ids ---------------------------------------------------------------

    def _prepare(self, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed):
        """Checks the arguments; returns (prompt ids RaggedTensor (B, (n)), scalar tensors:
        max_new_tokens, then `Sampling.tensors()`)."""
        sampling = samplers.Sampling(temperature, top_k, top_p, seed)
        D.check_max_new_tokens(max_new_tokens, self.max_length)
        if isinstance(prompt_ids, tf.RaggedTensor):
            ragged = tf.cast(prompt_ids, tf.int32).with_row_splits_dtype(tf.int64)
        else:
            ragged = D.ragged_from_lists(prompt_ids)
        flat = ragged.flat_values.numpy()
        vocab_size = self.model.config.vocab_size
        if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
            raise ValueError(f"Prompt token ids must be in [0, {vocab_size}) (the model's "
                             f"vocab_size). Received ids from {flat.min()} to {flat.max()}.")
        return ragged, (tf.constant(max_new_tokens, tf.int32), *sampling.tensors())

    def _warn_if_cut(self, truncated, max_new_tokens) -> None:
        cut = np.flatnonzero(np.asarray(truncated))
        if cut.size:
            warnings.warn(
                f"Prompt(s) {cut.tolist()} cut from the left to "
                f"{self.max_length - max_new_tokens} tokens: max_length={self.max_length} "
                f"holds the prompt and max_new_tokens={max_new_tokens}.", stacklevel=3)

    def generate_ids(self, prompt_ids, max_new_tokens: int, temperature: float = 0.0,
                     top_k: int = 0, top_p: float = 1.0,
                     seed: Optional[int] = None) -> list[list[int]]:
        """New token ids for each prompt.

        Args:
            prompt_ids: B lists of token ids (or an int RaggedTensor (B, (n))).
            max_new_tokens: 0 <= max_new_tokens <= max_length - 1.
            temperature: >= 0; 0 = greedy.
            top_k: >= 0; 0 = off. top_p: in (0, 1]; 1 = off.
            seed: int, or None for a fresh random seed.

        Returns:
            B lists of new ids, each cut after its first EOS (which is kept).
        """
        if self.compile == "eager":
            steps = list(self.stream_ids(prompt_ids, max_new_tokens, temperature, top_k,
                                         top_p, seed))
            batch = len(prompt_ids) if not isinstance(prompt_ids, tf.RaggedTensor) \
                else int(prompt_ids.nrows())
            new = np.stack(steps, axis=1) if steps else np.zeros((batch, 0), np.int32)
            return D.trim_new_tokens(new, self.eos_id)
        ragged, args = self._prepare(prompt_ids, max_new_tokens, temperature, top_k, top_p,
                                     seed)
        if int(ragged.nrows()) == 0:
            return []
        new_ids, truncated = self.generate_graph(ragged, *args)
        self._warn_if_cut(truncated.numpy(), max_new_tokens)
        return D.trim_new_tokens(new_ids.numpy(), self.eos_id)

    def stream_ids(self, prompt_ids, max_new_tokens: int, temperature: float = 0.0,
                   top_k: int = 0, top_p: float = 1.0,
                   seed: Optional[int] = None) -> Iterator[np.ndarray]:
        """Yields each step's tokens, int32 (B,) (PAD for rows past their EOS).

        Same arguments and the same tokens as `generate_ids`, one cached step per
        Python iteration; stops when every row has produced EOS.
        """
        ragged, (max_new, *sampling) = self._prepare(
            prompt_ids, max_new_tokens, temperature, top_k, top_p, seed)
        prepared = D.prepare_prompts(ragged, self.max_length, max_new, self.bos_id, self.pad_id)
        self._warn_if_cut(prepared.truncated.numpy(), max_new_tokens)
        tokens, lengths, prompt_end = prepared.tokens, prepared.lengths, prepared.prompt_end
        if tokens.shape[0] == 0:
            return
        cache = self._prefill(tokens, lengths, prompt_end)
        done = tf.zeros([tokens.shape[0]], tf.bool)
        index = prompt_end
        for _ in range(max_new_tokens):
            emitted = index
            index, tokens, cache, done = self._step(index, tokens, cache, done, lengths,
                                                    prompt_end, *sampling)
            yield tokens[:, int(emitted)].numpy()
            if bool(tf.reduce_all(done)):
                return

    # -- text ------------------------------------------------------------------

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("This Generator has no tokenizer: pass `tokenizer=` to generate "
                             "text, or use `generate_ids` with token ids.")
        return self.tokenizer

    def _encode(self, prompts):
        tokenizer = self._require_tokenizer()
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("`prompts` must be a string or a list of strings. "
                             f"Received: {prompts!r}")
        return tokenizer.encode(tf.constant(texts, tf.string))

    def decode_text(self, ids: Sequence[int]) -> str:
        """Token ids -> text (PAD, BOS, EOS dropped; invalid UTF-8 replaced)."""
        text = self._require_tokenizer().decode(tf.constant(list(ids), tf.int32))
        return text.numpy().decode("utf-8", errors="replace")

    def generate(self, prompts, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: Optional[int] = None):
        """The continuation of each prompt: a str for a str, a list for a list of str."""
        ids = self.generate_ids(self._encode(prompts), max_new_tokens, temperature, top_k,
                                top_p, seed)
        texts = [self.decode_text(row) for row in ids]
        return texts[0] if isinstance(prompts, str) else texts

    def stream(self, prompt: str, max_new_tokens: int, temperature: float = 0.0,
               top_k: int = 0, top_p: float = 1.0,
               seed: Optional[int] = None) -> Iterator[str]:
        """Yields the continuation of one prompt in pieces, as the tokens are made.

        The pieces join to `generate(prompt, ...)`. Each step decodes all new ids
        so far and yields what was added, holding back a trailing U+FFFD (half of
        a multi-byte character from a byte-level tokenizer).
        """
        if not isinstance(prompt, str):
            raise ValueError(f"`prompt` must be a string. Received: {prompt!r}")
        ids, emitted = [], ""
        for step_tokens in self.stream_ids(self._encode([prompt]), max_new_tokens, temperature,
                                           top_k, top_p, seed):
            ids.append(int(step_tokens[0]))
            text = self.decode_text(ids)
            stable = text.rstrip("\ufffd")
            if stable.startswith(emitted) and len(stable) > len(emitted):
                yield stable[len(emitted):]
                emitted = stable
        text = self.decode_text(ids)
        if text.startswith(emitted) and len(text) > len(emitted):
            yield text[len(emitted):]


def generate(model, tokenizer, prompts, max_new_tokens: int, **sampling):
    """One-off text generation; compiles for each call (keep a `Generator` to reuse)."""
    return Generator(model, tokenizer).generate(prompts, max_new_tokens, **sampling)


def generate_ids(model, prompt_ids, max_new_tokens: int, **sampling) -> list[list[int]]:
    """One-off generation from token ids; compiles for each call (keep a `Generator`)."""
    return Generator(model).generate_ids(prompt_ids, max_new_tokens, **sampling)


# nanoGPT's sample.py settings for the text printed while training.
TRAINING_SAMPLE_TEMPERATURE = 0.8
TRAINING_SAMPLE_TOP_K = 200


def training_sampler(length: int, seed: int):
    """What `llm_tf.training.train(sampler=...)` takes: `(model, tokenizer) -> sample(step)`,
    where `sample(step)` is `length` tokens generated after a newline, seeded by (seed, step).

    The `Generator`'s KV cache and stateless seeds never touch the training's random
    state. A sample longer than the context is made in rounds, each continuing from
    the last half-context, as nanoGPT crops its context to `block_size`.
    """

    def make(model, tokenizer):
        generator = Generator(model, tokenizer, compile="graph")
        max_length = model.config.max_length
        window = max(1, max_length // 2)
        newline = [int(i) for i in tokenizer.encode(tf.constant("\n")).numpy()]
        prompt = newline if newline and tokenizer.unk_id not in newline else []  # [] -> BOS

        def sample(step: int) -> str:
            new, round_ = [], 0
            while len(new) < length:
                context = (prompt + new)[-window:] if new else prompt
                n = min(length - len(new), max_length - max(len(context), 1))
                ids = generator.generate_ids(
                    [context], n, temperature=TRAINING_SAMPLE_TEMPERATURE,
                    top_k=min(TRAINING_SAMPLE_TOP_K, tokenizer.vocab_size),
                    seed=seed * 7919 + step * 101 + round_)[0]
                new += [int(i) for i in ids]
                round_ += 1
                if len(ids) < n or (ids and ids[-1] == tokenizer.eos_id):
                    break
            return f"----- sample at step {step} -----\n{generator.decode_text(new)}\n-----"

        return sample

    return make
