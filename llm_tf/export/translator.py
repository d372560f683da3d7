"""The translator's export: a SavedModel that turns source sentences into translations.

    llm-tf export RUN_DIR [OUT_DIR]          # a "translation" run -> this module's SavedModel

The SavedModel holds the run's tokenizer (one for both languages), the model's weights and
the beam search (`llm_tf.generation.beam`: encoder once, cached decoder steps, one XLA-compiled
`tf.while_loop`), all as TensorFlow ops, so any TensorFlow program can call it without llm_tf:

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the SentencePiece/WordPiece ops
    translator = tf.saved_model.load("RUN_DIR/saved_model")
    translator.translate(["Ich habe Hunger."], beam_size=4, length_penalty=0.6)  # -> string (B,)

Signature (`saved_model_cli show --dir OUT_DIR --all`): `translate` (also `serving_default`):
sources string (B,), beam_size int32, length_penalty float32 -> {"translations": string (B,)}.
Beam size 1 is greedy decoding. The search compiles once per batch size, source-length step
(sources are padded to a multiple of 16 tokens) and beam size, then reuses the compilation.
Bad arguments fail with an `InvalidArgumentError` naming the argument.

(The design document's tutorial ancestry cannot save its trained translator and reload it,
tensorflow/text#1091; beam search that survives export is huggingface/transformers#19747.)
"""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from llm_tf.export.files import CONFIG_ASSET, README_ASSET, check_out_dir, write_saved_model
from llm_tf.generation.seq2seq import MAX_LEN_A, MAX_LEN_B
from llm_tf.generation.translator import SOURCE_LENGTH_STEP, Translator

SIGNATURES = ("serving_default", "translate")

README_TEXT = """\
llm_tf translator (SavedModel)
==============================

Load it with TensorFlow alone -- llm_tf and Keras are not needed:

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (first! see below)
    translator = tf.saved_model.load("{dir_name}")
    out = translator.translate(tf.constant(["Ich habe Hunger."]),
                               beam_size=4, length_penalty=0.6)   # -> string (B,)
    print(out[0].numpy().decode("utf-8"))

IMPORT tensorflow_text BEFORE LOADING when the tokenizer uses TF-Text ops
(this export's tokenizer kind: "{kind}"; wordpiece and sentencepiece do, char
and byte do not). Without it, loading fails with "Op type not registered".

Signature translate / serving_default:
    sources string[B], beam_size int32 (>= 1; 1 = greedy),
    length_penalty float32 (>= 0, GNMT's alpha: scores are log P / ((5+|Y|)/6)^alpha)
    ->  translations string[B]

Sources longer than {max_length} tokens keep their first {max_length}; an output has at
most min({max_length}, ceil({max_len_a} * source tokens) + {max_len_b}) tokens.

Model: {config}
Special ids: PAD={pad_id}, UNK={unk_id}, BOS={bos_id}, EOS={eos_id}.
"""


def _specs():
    return [tf.TensorSpec([None], tf.string, name="sources"),
            tf.TensorSpec([], tf.int32, name="beam_size"),
            tf.TensorSpec([], tf.float32, name="length_penalty")]


class TranslationModule(tf.Module):
    """Tokenizer + weights + beam search, exportable with `tf.saved_model.save`.

    Args:
        model: a `Transformer` (one vocabulary: the tokenizer's).
        tokenizer: the run's tokenizer.
        jit_compile: compile the search with XLA.
    """

    def __init__(self, model, tokenizer, jit_compile: bool = True):
        super().__init__(name="llm_tf_translator")
        if tokenizer.vocab_size != model.target_vocab_size:
            raise ValueError(
                f"The tokenizer has vocab_size={tokenizer.vocab_size} but the model was built "
                f"for vocab_size={model.target_vocab_size}: they belong to different runs.")
        self.tokenizer = tokenizer
        # The tf.Variables under Keras' wrappers, tracked so that they are saved (see
        # export/generator.py for why not the wrappers).
        self.model_variables = [v.value for v in model.variables]
        self.max_length = tf.Variable(model.maximum_position_encoding, trainable=False,
                                      name="max_length")
        self._max_length = model.maximum_position_encoding
        self._pad_id = tokenizer.pad_id
        # A plain Python object: its compiled search is traced into `translate`.
        self._translator = Translator(model, tokenizer, compile="xla" if jit_compile else "graph")

    @tf.function(autograph=False, input_signature=_specs())
    def translate(self, sources, beam_size, length_penalty):
        """Translations of `sources` (B,) -> string (B,)."""
        checks = [tf.debugging.assert_greater_equal(
                      beam_size, 1, message="`beam_size` must be an integer >= 1"),
                  tf.debugging.assert_greater_equal(
                      length_penalty, 0.0, message="`length_penalty` must be a number >= 0")]
        with tf.control_dependencies(checks):
            ids = self.tokenizer.encode(sources)[:, :self._max_length]  # (B, (n))
        dense = ids.to_tensor(default_value=self._pad_id)               # (B, n_max)
        longest = tf.maximum(tf.shape(dense)[1], 1)
        step = SOURCE_LENGTH_STEP
        width = tf.minimum(self._max_length, (longest + step - 1) // step * step)
        source_ids = tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]],
                            constant_values=self._pad_id)                # (B, S)
        slots = tf.zeros([beam_size], tf.bool)                           # K = its length
        tokens, _ = self._translator.beam(source_ids, slots, length_penalty)  # (B, T_max)
        return self.tokenizer.decode(tokens)                             # PAD, EOS dropped

    def signatures(self) -> dict:
        texts = tf.function(
            lambda sources, beam_size, length_penalty: {
                "translations": self.translate(sources, beam_size, length_penalty)},
            autograph=False, input_signature=_specs()).get_concrete_function()
        return {"serving_default": texts, "translate": texts}


def export_model(model, tokenizer, out_dir, jit_compile: bool = True) -> Path:
    """Writes `TranslationModule(model, tokenizer)` as a SavedModel to `out_dir` (atomically;
    a non-empty `out_dir` that is not a SavedModel is refused). Returns `out_dir`."""
    check_out_dir(out_dir)
    module = TranslationModule(model, tokenizer, jit_compile=jit_compile)
    config = model.config.to_dict()
    readme = README_TEXT.format(
        dir_name=Path(out_dir).name, kind=getattr(tokenizer, "kind", "?"),
        max_length=model.maximum_position_encoding, max_len_a=MAX_LEN_A, max_len_b=MAX_LEN_B,
        config=json.dumps(config, sort_keys=True), pad_id=tokenizer.pad_id,
        unk_id=tokenizer.unk_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    return write_saved_model(module, out_dir, module.signatures(), {
        README_ASSET: readme, CONFIG_ASSET: json.dumps(config, indent=2) + "\n"})
