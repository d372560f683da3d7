"""The three ways to adapt a pre-trained model (§2.2.2), applied to a built model.

    full    every weight trains: the pre-trained ones are only the starting point
    frozen  the pre-trained stack is fixed and only the task head trains: "feature
            extraction" — the stack computes features, a new layer learns the task
    lora    the stack is fixed except low-rank adapters on its attention projections
            (Hu et al. 2021, `llm_tf.layers.lora`), which train with the task head; on
            save they are merged into the weights, so the result is a plain model

`apply_method` runs inside `build_model` (every run, new or resumed), so a resumed run has
the same trainable variables, and checkpoints the same adapters, as the run that saved it.
"""

from __future__ import annotations

from llm_tf.config import FinetuneConfig
from llm_tf.layers.lora import enable_lora, freeze
from llm_tf.models import TransformerClassifier


def apply_method(model, finetune: FinetuneConfig) -> None:
    """Makes `model` (a built `TransformerClassifier` or `TransformerLM`) trainable as
    `finetune.method` says."""
    if finetune.method == "full":
        return
    has_head = isinstance(model, TransformerClassifier)
    if finetune.method == "frozen":
        if not has_head:
            raise ValueError("--method frozen trains a task head on fixed features; a "
                             "language model has no head to train (use full or lora).")
        # Keras' transfer-learning idiom: a non-trainable backbone, run in inference mode
        # (TransformerClassifier.features), so its features are what pre-training made them.
        model.decoder.trainable = False
        return
    enable_lora(model.decoder, finetune.lora_rank, finetune.lora_alpha,
                finetune.lora_target_names)
    if not has_head and getattr(model, "lm_head", None) is not None:
        freeze(model.lm_head)  # an untied output projection is pre-trained weight too
