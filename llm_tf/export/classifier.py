"""A classifier's export: a SavedModel that turns strings into labels and probabilities.

    llm-tf export RUN_DIR [OUT_DIR]          # a "classify" run; OUT_DIR = RUN_DIR/saved_model

The SavedModel holds the tokenizer, the weights (a LoRA run's already merged) and the
forward pass, all as TensorFlow ops, so any TensorFlow program can call it without llm_tf:

    import tensorflow as tf
    classifier = tf.saved_model.load("RUN_DIR/saved_model")
    out = classifier.signatures["classify"](texts=tf.constant(["WIN A PRIZE NOW", "Re: lunch"]))
    out["labels"]          # string (B,)    the most probable class of each text
    out["probabilities"]   # float32 (B, C) in the order of out["label_names"]
    out["label_names"]     # string (C,)

Texts are cut to their first `context_length` tokens, as in training
(llm_tf/data/classification.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from llm_tf.export.files import CONFIG_ASSET, README_ASSET, check_out_dir, write_saved_model

SIGNATURES = ("serving_default", "classify")
__all__ = ["ClassifierModule", "SIGNATURES", "export_classifier"]

README_TEXT = """\
llm_tf text classifier (SavedModel)
===================================

Load it with TensorFlow alone -- llm_tf and Keras are not needed:

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (first, for wordpiece/sentencepiece tokenizers)
    classifier = tf.saved_model.load("{dir_name}")
    out = classifier.signatures["classify"](texts=tf.constant(["some text"]))
    out["labels"], out["probabilities"], out["label_names"]

This export's tokenizer kind: "{kind}" (wordpiece and sentencepiece use TF-Text ops:
import tensorflow_text before loading; char and byte do not).

Signatures (saved_model_cli show --dir DIR --all):
  classify / serving_default:
      texts string[B]  ->  labels string[B], probabilities float32[B, C],
                           label_names string[C]

Classes, in the order of the probabilities: {labels}
Texts are cut to their first {length} tokens (as in training).
Model: {config}
"""


class ClassifierModule(tf.Module):
    """Tokenizer + classifier weights + forward pass, exportable with `tf.saved_model.save`.

    Args:
        model: a `TransformerClassifier`.
        tokenizer: its run's tokenizer.
        label_names: the C class names, in class-id order.
        context_length: T, tokens kept from each text.
    """

    def __init__(self, model, tokenizer, label_names, context_length: int):
        super().__init__(name="llm_tf_classifier")
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"The tokenizer has vocab_size={tokenizer.vocab_size} but the model was built "
                f"for vocab_size={model.config.vocab_size}: they belong to different runs.")
        if len(label_names) != model.num_classes:
            raise ValueError(f"{len(label_names)} label names for a model of "
                             f"{model.num_classes} classes.")
        self.tokenizer = tokenizer
        # The weights as plain tf.Variables (see GenerationModule for why not Keras' wrappers).
        self.model_variables = [v.value for v in model.variables]
        self.label_names = tf.Variable(list(label_names), trainable=False, name="label_names")
        self._length = int(context_length)
        self._pad_id = tokenizer.pad_id
        # A closure, not an attribute holding the Keras model: only the variables are saved.
        self._logits = lambda ids: model(ids, training=False)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.string,
                                                                 name="texts")])
    def classify(self, texts):
        """texts (B,) -> {"labels": string (B,), "probabilities": float32 (B, C),
        "label_names": string (C,)}."""
        ids = self.tokenizer.encode(texts)[:, :self._length]  # (B, (n)), the first T tokens
        ids = ids.to_tensor(self._pad_id, shape=[None, self._length])  # (B, T)
        probabilities = tf.nn.softmax(self._logits(ids))  # (B, C)
        names = self.label_names.read_value()
        return {"labels": tf.gather(names, tf.argmax(probabilities, axis=-1)),
                "probabilities": probabilities, "label_names": names}

    def signatures(self) -> dict:
        concrete = self.classify.get_concrete_function()
        return {"serving_default": concrete, "classify": concrete}


def export_classifier(model, tokenizer, label_names, context_length: int, out_dir) -> Path:
    """Writes `ClassifierModule(...)` as a SavedModel to `out_dir` (replaced whole; a
    non-empty directory that is not a SavedModel is refused). Returns `out_dir`."""
    check_out_dir(out_dir)
    module = ClassifierModule(model, tokenizer, label_names, context_length)
    config = {**model.config.to_dict(), "num_classes": model.num_classes,
              "pooling": model.pooling, "labels": list(label_names),
              "context_length": int(context_length)}
    readme = README_TEXT.format(dir_name=Path(out_dir).name,
                                kind=getattr(tokenizer, "kind", "?"),
                                labels=", ".join(label_names), length=context_length,
                                config=json.dumps(config, sort_keys=True))
    return write_saved_model(module, out_dir, module.signatures(), {
        README_ASSET: readme, CONFIG_ASSET: json.dumps(config, indent=2) + "\n"})
