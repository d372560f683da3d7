"""LoRA: low-rank adapters on the attention projections of a frozen stack (Hu et al. 2021).

A pre-trained projection W (D_in, D_out) stays frozen and learns a low-rank update:

    h = x W + (α / r) · x A B        A (D_in, r): Kaiming-uniform    B (r, D_out): zeros

B = 0 makes the adapted model start exactly where the pre-trained one was; only A and B
train, r·(D_in + D_out) numbers per projection instead of D_in·D_out (for D = 128, r = 8:
2,048 instead of 16,384). α / r keeps the update's size from depending on r (the paper
§4.1: "we simply set α to the first r we try"). After training, W' = W + (α/r)·A·B is an
ordinary weight: merged, the model is a plain one again and costs nothing extra to run.

Keras 3's `Dense` implements exactly this (`Dense.enable_lora(rank, lora_alpha)`: A from
`he_uniform`, B from zeros, its `kernel` the merged W', its weights file the merged
kernel only). llm_tf uses it rather than a Dense of its own: an adapted projection keeps
its place, name and variables, so pre-trained weights copy into it unchanged and a saved
file is a plain model's. What this module adds is the choice of projections (the paper
adapts queries and values), the freezing of everything else (as keras-hub's
`Backbone.enable_lora` does), and a count of what trains.
"""

from __future__ import annotations

import keras

from llm_tf._validation import check_positive, is_number, require
from llm_tf.config import LORA_TARGETS
from llm_tf.layers.attention import MultiHeadAttention

# `LORA_TARGETS` name -> the `MultiHeadAttention` attribute holding that projection.
PROJECTIONS = {"query": "query_dense", "key": "key_dense", "value": "value_dense",
               "attention_output": "output_dense"}
assert tuple(PROJECTIONS) == LORA_TARGETS, "config.LORA_TARGETS and PROJECTIONS disagree"


def attention_layers(stack) -> list[MultiHeadAttention]:
    """Every `MultiHeadAttention` of a `TransformerStack`'s blocks (self- and cross-)."""
    found = []
    for block in stack.blocks:
        for name in ("self_attention", "cross_attention"):
            layer = getattr(block, name, None)
            if isinstance(layer, MultiHeadAttention):
                found.append(layer)
    return found


def freeze(layer: keras.layers.Layer) -> None:
    """Marks every variable of `layer` non-trainable (the layer itself still runs in training
    mode, so its dropout stays on, as in the LoRA paper)."""
    for variable in layer.weights:
        variable.trainable = False


def enable_lora(stack, rank: int, alpha: float,
                targets=("query", "value")) -> list[keras.layers.Dense]:
    """Freezes `stack` (a built `TransformerStack`) and gives the `targets` projections of its
    attention layers rank-`rank` adapters scaled by `alpha / rank`.

    Args:
        stack: e.g. `TransformerLM.decoder`; must be built (the adapters take its shapes).
        rank: r >= 1.
        alpha: α > 0.
        targets: names from `config.LORA_TARGETS`.

    Returns:
        the adapted Dense layers; their `lora_kernel_a`/`lora_kernel_b` are the only trainable
        variables left under `stack`.
    """
    check_positive("rank", rank)
    require(is_number(alpha) and alpha > 0, "alpha", alpha, "a positive number")
    targets = tuple(targets)
    require(bool(targets) and set(targets) <= set(PROJECTIONS), "targets", targets,
            f"names from {', '.join(PROJECTIONS)}")
    if not stack.built:
        raise ValueError("`enable_lora` needs a built stack: build the model first.")
    freeze(stack)
    adapted = []
    for attention in attention_layers(stack):
        for target in targets:
            dense = getattr(attention, PROJECTIONS[target])
            dense.enable_lora(rank, lora_alpha=alpha)  # A, B trainable; the kernel frozen
            adapted.append(dense)
    return adapted


def lora_layers(stack) -> list[keras.layers.Dense]:
    """The attention projections of `stack` that carry LoRA adapters."""
    return [dense for attention in attention_layers(stack)
            for dense in (getattr(attention, name) for name in PROJECTIONS.values())
            if getattr(dense, "lora_enabled", False)]


def count_parameters(variables) -> int:
    """Numbers held by `variables` (e.g. `model.trainable_variables`)."""
    total = 0
    for variable in variables:
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        total += size
    return total
