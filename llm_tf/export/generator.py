"""The language model's export: a SavedModel that turns strings into strings.

    llm-tf export RUN_DIR [OUT_DIR]          # OUT_DIR defaults to RUN_DIR/saved_model
    llm_tf.export.export_run(run_dir)        # the same from Python; returns OUT_DIR

(the command is llm_tf/commands/export.py; `llm_tf.export.export_run` picks this
module for "lm" runs)

The SavedModel holds a `tf.Module` with the tokenizer, the model's weights (as
variables) and the cached decode loop, all as TensorFlow ops, so any TensorFlow
program, `saved_model_cli` or TF Serving can call it without llm_tf or Keras:

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the TF-Text ops some tokenizers use
    generator = tf.saved_model.load("RUN_DIR/saved_model")
    generator.generate(["To be"], max_new_tokens=50, temperature=0.0, top_k=0, top_p=1.0,
                       seed=0)                                    # -> string (B,)

Signatures (`saved_model_cli show --dir OUT_DIR --all`):

* `generate` (also `serving_default`): prompts string (B,), max_new_tokens int32,
  temperature float32, top_k int32, top_p float32, seed int32 -> {"texts": string (B,)},
  the continuations (not repeating the prompts).
* `generate_ids`: token_ids int32 (B, N) (entries equal to the tokenizer's PAD are
  ignored, so rows may be padded on either side), the same five scalars ->
  {"token_ids": int32 (B, max_new_tokens)}, PAD after a row's EOS. The special ids
  are the tokenizer's: PAD=0, BOS=2, EOS=3 for llm_tf's own tokenizers; GPT-2's
  `<|endoftext|>` for all three in an imported GPT-2 (so such a prompt cannot hold
  `<|endoftext|>` itself in `generate_ids`; an empty row starts from it).

The decode loop inside is compiled with XLA once per batch size: prompts are
laid out in a fixed (B, max_length) buffer inside the graph, so a new prompt
length or `max_new_tokens` never recompiles. Bad arguments fail with an
`InvalidArgumentError` whose message names the argument.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import tensorflow as tf

from llm_tf.config import PROMPT_PLACEHOLDER
from llm_tf.export.files import (
    CONFIG_ASSET,
    README_ASSET,
    check_out_dir,
    load_saved_model,
    write_saved_model,
)
from llm_tf.generation.decode import max_new_tokens_graph_checks
from llm_tf.generation.generator import Generator
from llm_tf.generation.samplers import Sampling

SIGNATURES = ("serving_default", "generate", "generate_ids")
__all__ = ["GenerationModule", "SIGNATURES", "export_model", "load_saved_model"]

README_TEXT = """\
llm_tf text generator (SavedModel)
==================================

Load it with TensorFlow alone -- llm_tf and Keras are not needed:

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (first! see below)
    generator = tf.saved_model.load("{dir_name}")
    texts = generator.generate(
        tf.constant(["Once upon a time"]), max_new_tokens=50,
        temperature=0.8, top_k=40, top_p=0.95, seed=1)   # -> string (B,)
    print(texts[0].numpy().decode("utf-8"))

IMPORT tensorflow_text BEFORE LOADING when the tokenizer uses TF-Text ops
(this export's tokenizer kind: "{kind}"; wordpiece, sentencepiece and gpt2 do,
char and byte do not). Without it, loading fails with "Op type not registered".

Signatures (saved_model_cli show --dir DIR --all):
  generate / serving_default:
      prompts string[B], max_new_tokens int32, temperature float32,
      top_k int32, top_p float32, seed int32  ->  texts string[B]
  generate_ids:
      token_ids int32[B, N] ({pad_id} = PAD entries ignored), same scalars
      ->  token_ids int32[B, max_new_tokens] ({pad_id} = PAD after EOS)

Outputs are the continuations only. temperature 0 is greedy; top_k 0 and
top_p 1 disable those filters; the same seed gives the same text.
0 <= max_new_tokens <= {max_new}; a prompt longer than
{max_length} - max_new_tokens tokens keeps its last tokens (a warning is printed
to stderr); an empty prompt starts from BOS; rows stop at EOS.

Model: {config}
Special ids: PAD={pad_id}, UNK={unk_id}, BOS={bos_id}, EOS={eos_id}.
{template}"""


def _scalar_specs():
    return [tf.TensorSpec([], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int32, name="seed")]


class GenerationModule(tf.Module):
    """Tokenizer + weights + cached decode loop, exportable with `tf.saved_model.save`.

    Args:
        model: a `TransformerLM`.
        tokenizer: an llm_tf tokenizer (a `tf.Module` of TF ops).
        jit_compile: compile the decode loop with XLA (measured: several times faster on CPU).
        prompt_template: an instruction-tuned run's template (`FinetuneConfig`): `generate`
            puts each prompt inside it, as training did; None (a plain language model)
            continues the prompts as they are.
    """

    def __init__(self, model, tokenizer, jit_compile: bool = True,
                 prompt_template: Optional[str] = None):
        super().__init__(name="llm_tf_generator")
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"The tokenizer has vocab_size={tokenizer.vocab_size} but the model was built "
                f"for vocab_size={model.config.vocab_size}: they belong to different runs.")
        self.tokenizer = tokenizer
        # The weights, tracked so that they are saved; the Keras objects are not
        # (the loaded SavedModel is plain TensorFlow). Track the tf.Variables under
        # Keras 3's wrappers: through the wrappers the graph reads variables that
        # session-based loaders (saved_model_cli run, TF Serving, the C++ API) cannot
        # find (keras-team/keras#19274); `tf.saved_model.load` works either way.
        self.model_variables = [v.value for v in model.variables]
        self.max_length = tf.Variable(model.config.max_length, trainable=False, name="max_length")
        self.vocab_size = tf.Variable(model.config.vocab_size, trainable=False, name="vocab_size")
        self._max_length = model.config.max_length
        self._vocab_size = model.config.vocab_size
        self._pad_id = tokenizer.pad_id
        self._template = (None if prompt_template is None
                          else prompt_template.partition(PROMPT_PLACEHOLDER)[::2])
        # A plain Python object: its compiled loop is traced into the functions below.
        self._generator = Generator(model, tokenizer, compile="xla" if jit_compile else "graph")

    def _check(self, max_new_tokens, temperature, top_k, top_p):
        """In-graph argument checks (the rules `Sampling` and `check_max_new_tokens` state
        in Python): an InvalidArgumentError naming the argument."""
        return (Sampling.graph_checks(temperature, top_k, top_p)
                + max_new_tokens_graph_checks(max_new_tokens, self._max_length))

    def _new_ids(self, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed):
        """Ragged prompt ids (B, (n)) -> new ids (B, max_new_tokens), PAD after EOS."""
        with tf.control_dependencies(self._check(max_new_tokens, temperature, top_k, top_p)):
            prompt_ids = prompt_ids.with_row_splits_dtype(tf.int64)
            prompt_ids = prompt_ids.with_flat_values(tf.identity(prompt_ids.flat_values))
        # The Generator's own graph: the same layout, loop and slicing as in memory.
        new_ids, truncated = self._generator.generate_graph(
            prompt_ids, max_new_tokens, temperature, top_k, top_p, seed)
        room = self._max_length - max_new_tokens

        def warn():
            tf.print("llm_tf SavedModel: warning: prompt(s) cut from the left to", room,
                     "tokens (max_length =", self._max_length, "holds prompt and new tokens)",
                     output_stream=sys.stderr)
            return tf.constant(True)

        warned = tf.cond(tf.reduce_any(truncated), warn, lambda: tf.constant(False))
        with tf.control_dependencies([warned]):
            return tf.identity(new_ids)

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None], tf.string, name="prompts"), *_scalar_specs()])
    def generate(self, prompts, max_new_tokens, temperature, top_k, top_p, seed):
        """Continuations of `prompts` (B,) -> string (B,)."""
        if self._template is not None:  # before + prompt + after, as the run was trained
            before, after = self._template
            prompts = tf.strings.join([before, prompts, after])
        new_ids = self._new_ids(self.tokenizer.encode(prompts), max_new_tokens, temperature,
                                top_k, top_p, seed)
        return self.tokenizer.decode(new_ids)  # PAD and EOS dropped

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="token_ids"), *_scalar_specs()])
    def generate_ids(self, token_ids, max_new_tokens, temperature, top_k, top_p, seed):
        """Prompt ids (B, N), PAD entries ignored -> new ids int32 (B, max_new_tokens)."""
        checks = [tf.debugging.assert_non_negative(
                      token_ids, message="`token_ids` must be >= 0"),
                  tf.debugging.assert_less(
                      token_ids, self._vocab_size,
                      message=f"`token_ids` must be < vocab_size={self._vocab_size}")]
        with tf.control_dependencies(checks):
            prompt_ids = tf.ragged.boolean_mask(token_ids, token_ids != self._pad_id)
        return self._new_ids(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed)

    def signatures(self) -> dict:
        """Serving signatures with named outputs, for `tf.saved_model.save`."""
        texts = tf.function(
            lambda prompts, max_new_tokens, temperature, top_k, top_p, seed: {
                "texts": self.generate(prompts, max_new_tokens, temperature, top_k, top_p,
                                       seed)},
            autograph=False,
            input_signature=[tf.TensorSpec([None], tf.string, name="prompts"), *_scalar_specs()])
        ids = tf.function(
            lambda token_ids, max_new_tokens, temperature, top_k, top_p, seed: {
                "token_ids": self.generate_ids(token_ids, max_new_tokens, temperature, top_k,
                                               top_p, seed)},
            autograph=False,
            input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                             *_scalar_specs()])
        texts = texts.get_concrete_function()
        return {"serving_default": texts, "generate": texts,
                "generate_ids": ids.get_concrete_function()}


def export_model(model, tokenizer, out_dir, jit_compile: bool = True,
                 prompt_template: Optional[str] = None) -> Path:
    """Writes `GenerationModule(model, tokenizer)` as a SavedModel to `out_dir`.

    The export is written next to `out_dir` and then moved into place, so an
    existing export is replaced whole. A non-empty `out_dir` that is not a
    SavedModel is never overwritten (`ValueError`).

    Returns:
        `out_dir` as a `Path`.
    """
    check_out_dir(out_dir)
    module = GenerationModule(model, tokenizer, jit_compile=jit_compile,
                              prompt_template=prompt_template)
    config = model.config.to_dict()
    if prompt_template is not None:
        config["prompt_template"] = prompt_template
    readme = README_TEXT.format(
        dir_name=Path(out_dir).name, kind=getattr(tokenizer, "kind", "?"),
        max_new=model.config.max_length - 1, max_length=model.config.max_length,
        config=json.dumps(config, sort_keys=True), pad_id=tokenizer.pad_id,
        unk_id=tokenizer.unk_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
        template="" if prompt_template is None else (
            f"Instruction-tuned: `generate` puts each prompt inside {prompt_template!r} "
            "(`generate_ids` takes the ids as given) and stops at the answer's EOS.\n"))
    return write_saved_model(module, out_dir, module.signatures(), {
        README_ASSET: readme, CONFIG_ASSET: json.dumps(config, indent=2) + "\n"})
