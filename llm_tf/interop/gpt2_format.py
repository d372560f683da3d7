"""The GPT-2 format mapping: Hugging Face's `config.json` and tensor names <-> `TransformerLM`.

GPT-2 *is* a configuration of `TransformerLM`: pre-LN blocks, learned positions, a
tied head, biases, GELU's tanh approximation. So there is no GPT-2 layer; this
module only translates names, shapes and config fields (docs/interop.md has the
tables):

    config.json                    ModelConfig
    n_embd, n_head, n_layer        d_model, num_heads, num_layers
    n_inner (null = 4·n_embd)      dff
    n_positions                    max_length
    vocab_size                     vocab_size
    activation_function            activation ("gelu_new" -> "gelu_tanh", ...)
    layer_norm_epsilon             layer_norm_epsilon
    resid_pdrop                    dropout (one rate for all three *_pdrop)
    tie_word_embeddings            tie_embeddings
    (always)                       norm_placement "pre", position_encoding "learned",
                                   use_bias, scale_embeddings False

Tensor layouts. GPT-2's `Conv1D` stores a projection as (in, out), the layout of a
Keras `Dense` kernel, so those copy as they are; `nn.Linear` (the untied
`lm_head`) stores (out, in) and is transposed. The fused `attn.c_attn` (D, 3D)
is the query, key and value kernels side by side (in that order; heads are
contiguous column blocks in each, as `MultiHeadAttention` splits them).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from llm_tf.config import ModelConfig

MODEL_TYPE = "gpt2"
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
# Hugging Face's activation names -> ModelConfig.activation. "gelu_new", "gelu_fast" and
# "gelu_pytorch_tanh" are three implementations of one formula, the tanh approximation.
ACTIVATIONS_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                       "gelu_fast": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
ACTIVATIONS_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
# GPT2Config's defaults, for fields a config.json leaves out (as transformers fills them).
HF_DEFAULTS = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
               "n_head": 12, "n_inner": None, "activation_function": "gelu_new",
               "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
               "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
               "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
               "add_cross_attention": False}
# Fields that must keep their default: each changes the function the weights compute.
FIXED_HF_FIELDS = ("scale_attn_weights", "scale_attn_by_inverse_layer_idx",
                   "add_cross_attention")
# Tensors that are not weights: the causal-mask buffers older checkpoints saved.
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
PREFIX = "transformer."


def model_config_from_hf(hf: dict) -> ModelConfig:
    """`config.json` (a dict) -> `ModelConfig`, or a `ValueError` naming the field."""
    if not isinstance(hf, dict):
        raise ValueError("it is not a JSON object.")
    if hf.get("model_type") != MODEL_TYPE:
        raise ValueError(f"model_type {hf.get('model_type')!r} is not supported: only "
                         f"GPT-2-architecture checkpoints (model_type {MODEL_TYPE!r}) are.")
    unknown = [a for a in hf.get("architectures") or [] if a not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"architectures {unknown!r} are not supported: only "
                         f"{', '.join(ARCHITECTURES)}.")
    hf = {**HF_DEFAULTS, **hf}
    for name in FIXED_HF_FIELDS:
        if hf[name] != HF_DEFAULTS[name]:
            raise ValueError(f"{name}={hf[name]!r} is not supported (llm_tf computes GPT-2 "
                             f"with {name}={HF_DEFAULTS[name]!r}).")
    activation = hf["activation_function"]
    if activation not in ACTIVATIONS_FROM_HF:
        raise ValueError(f"activation_function {activation!r} has no llm_tf equivalent "
                         f"(supported: {', '.join(ACTIVATIONS_FROM_HF)}).")
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"], d_model=hf["n_embd"], num_heads=hf["n_head"],
            num_layers=hf["n_layer"], max_length=hf["n_positions"],
            dff=hf["n_inner"] if hf["n_inner"] is not None else 4 * hf["n_embd"],
            dropout=hf["resid_pdrop"], norm_placement="pre", position_encoding="learned",
            tie_embeddings=bool(hf["tie_word_embeddings"]), use_bias=True,
            activation=ACTIVATIONS_FROM_HF[activation],
            layer_norm_epsilon=hf["layer_norm_epsilon"], scale_embeddings=False)
    except (TypeError, ValueError) as error:  # ModelConfig names the llm_tf field
        raise ValueError(f"its values make no valid model: {error}") from None


def check_expressible(config: ModelConfig) -> None:
    """A `ValueError` naming the first field GPT-2's format cannot express."""
    rules = (("norm_placement", "pre"), ("position_encoding", "learned"),
             ("scale_embeddings", False))
    for name, value in rules:
        if getattr(config, name) != value:
            raise ValueError(f"the model has {name}={getattr(config, name)!r}; GPT-2's format "
                             f"needs {name}={value!r}.")
    if config.activation not in ACTIVATIONS_TO_HF:
        raise ValueError(f"the model has activation={config.activation!r}, which has no "
                         "Hugging Face name.")


def hf_config_from(config: ModelConfig, bos_id: int, eos_id: int,
                   pad_id: Optional[int] = None) -> dict:
    """`ModelConfig` (GPT-2-expressible) -> the `config.json` of a GPT2LMHeadModel."""
    check_expressible(config)
    hf = {"architectures": ["GPT2LMHeadModel"], "model_type": MODEL_TYPE,
          "vocab_size": config.vocab_size, "n_positions": config.max_length,
          "n_ctx": config.max_length, "n_embd": config.d_model, "n_layer": config.num_layers,
          "n_head": config.num_heads, "n_inner": config.dff,
          "activation_function": ACTIVATIONS_TO_HF[config.activation],
          "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
          "attn_pdrop": config.dropout, "layer_norm_epsilon": config.layer_norm_epsilon,
          "initializer_range": 0.02, "tie_word_embeddings": config.tie_embeddings,
          "scale_attn_weights": True, "bos_token_id": bos_id, "eos_token_id": eos_id,
          "torch_dtype": "float32"}
    if pad_id is not None and pad_id != eos_id:
        hf["pad_token_id"] = pad_id
    return hf


@dataclasses.dataclass(frozen=True)
class TensorMapping:
    """One Hugging Face tensor and the `TransformerLM` variables it holds.

    Attributes:
        name: the tensor's name, without the "transformer." prefix.
        shape: its shape in the checkpoint.
        paths: attribute paths from the model to the variables it fills, side by side
            along its last axis (three for c_attn, else one).
        transposed: stored (out, in) (nn.Linear) while the variable is (in, out).
    """

    name: str
    shape: tuple
    paths: tuple
    transposed: bool = False

    def variables(self, model) -> list:
        """The variables `paths` lead to in `model`; None for a bias or LayerNorm β the
        model was built without (use_bias=False), which the checkpoint holds as zeros."""
        found = []
        for path in self.paths:
            target = model
            for step in path.split("."):
                target = target[int(step)] if step.isdigit() else getattr(target, step)
            found.append(target)
        return found


def tensor_mappings(config: ModelConfig) -> list[TensorMapping]:
    """The tensors of a GPT-2 checkpoint of `config`, in GPT-2's order."""
    D, F, V = config.d_model, config.dff, config.vocab_size

    def norm(name, layer):  # a LayerNorm: γ ("weight") and β ("bias")
        return [TensorMapping(f"{name}.weight", (D,), (f"{layer}.gamma",)),
                TensorMapping(f"{name}.bias", (D,), (f"{layer}.beta",))]

    def conv1d(name, layer, fan_in, fan_out):  # (in, out), like a Dense kernel
        return [TensorMapping(f"{name}.weight", (fan_in, fan_out), (f"{layer}.kernel",)),
                TensorMapping(f"{name}.bias", (fan_out,), (f"{layer}.bias",))]

    tensors = [
        TensorMapping("wte.weight", (V, D), ("decoder.embedding.token_embedding.embeddings",)),
        TensorMapping("wpe.weight", (config.max_length, D),
                      ("decoder.embedding.position_embedding.embeddings",)),
    ]
    for i in range(config.num_layers):
        block, h = f"decoder.blocks.{i}", f"h.{i}"
        qkv = [f"{block}.self_attention.{d}_dense" for d in ("query", "key", "value")]
        tensors += norm(f"{h}.ln_1", f"{block}.self_attention_norm")
        tensors += [
            TensorMapping(f"{h}.attn.c_attn.weight", (D, 3 * D),
                          tuple(f"{q}.kernel" for q in qkv)),
            TensorMapping(f"{h}.attn.c_attn.bias", (3 * D,), tuple(f"{q}.bias" for q in qkv))]
        tensors += conv1d(f"{h}.attn.c_proj", f"{block}.self_attention.output_dense", D, D)
        tensors += norm(f"{h}.ln_2", f"{block}.feed_forward_norm")
        tensors += conv1d(f"{h}.mlp.c_fc", f"{block}.feed_forward.hidden_dense", D, F)
        tensors += conv1d(f"{h}.mlp.c_proj", f"{block}.feed_forward.output_dense", F, D)
    tensors += norm("ln_f", "decoder.final_norm")
    if not config.tie_embeddings:  # nn.Linear(D, V): weight (V, D)
        tensors.append(TensorMapping("lm_head.weight", (V, D), ("lm_head.kernel",),
                                     transposed=True))
    return tensors


def checkpoint_name(name: str) -> str:
    """The name `export` writes: what GPT2LMHeadModel.save_pretrained writes."""
    return name if name.startswith("lm_head.") else PREFIX + name


def canonical_name(name: str) -> str:
    """A checkpoint's tensor name without the "transformer." prefix (GPT2Model files have
    none; GPT2LMHeadModel files have it on all but lm_head)."""
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def is_buffer(name: str) -> bool:
    """The attention-mask buffers older checkpoints saved (h.N.attn.bias, .masked_bias)."""
    return canonical_name(name).startswith("h.") and name.endswith(BUFFER_SUFFIXES)
