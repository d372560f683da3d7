"""One configuration object per concern, and presets that name all three.

* :class:`ModelConfig` — the architecture (what `TransformerLM` is built from).
* :class:`DataConfig`  — where text comes from, how it is tokenized and batched.
* :class:`TrainConfig` — optimizer, schedule, loop cadence, precision.
* :class:`FinetuneConfig` — how a fine-tuned run starts from a pre-trained one (§2.2.2).

They are frozen dataclasses: printable, comparable, and written to `config.json`
next to every checkpoint so that any run can be reproduced and any checkpoint
reloaded from its directory alone. Each validates itself when made and raises a
`ValueError` that names the field and echoes the value it received.

A *preset* names a model **and** the data and training settings it is meant to be
trained with (as nanoGPT's `config/train_shakespeare_char.py` does), so
`llm-tf train --preset tiny` reproduces nanoGPT's CPU "baby GPT" run.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any, Mapping, NamedTuple

from llm_tf._validation import (
    check_choice,
    check_divisible,
    check_non_negative,
    check_positive,
    check_rate,
    check_rotary_head_width,
    is_number,
    require,
)

# The choices, defined here once; the layers import them.
NORM_PLACEMENTS = ("pre", "post")
POSITION_ENCODINGS = ("learned", "sinusoidal", "rope")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
SCHEDULES = ("cosine", "noam", "constant")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# Tokenizer kinds llm_tf learns from a corpus, and those that only come with published
# weights (`llm-tf import-hf`); a DataConfig may name either, since a run that continues
# training an imported model keeps its tokenizer.
TOKENIZERS = ("char", "byte", "wordpiece", "sentencepiece")
PRETRAINED_TOKENIZERS = ("gpt2",)
# What a run trains its model to do (`RunConfig.task`, `llm_tf.rundir`): "lm" pre-trains (or
# continues pre-training) a decoder-only language model; "translation" trains the
# encoder-decoder `Transformer` on source<TAB>target pairs (llm_tf/translation.py);
# "classify" puts a classification head on a pre-trained language model; "instruct" tunes
# one on prompt/response pairs (llm_tf/fine_tuning/).
TASKS = ("lm", "translation", "classify", "instruct")
# The tasks that only exist as the fine-tuning of a pre-trained run (`llm-tf finetune`): their
# config.json must say which run they started from ("finetune").
FINETUNE_TASKS = ("classify", "instruct")
# How a pre-trained model is adapted (§2.2.2): train everything, only a task head on frozen
# features (feature extraction), or low-rank adapters (LoRA, Hu et al. 2021) plus the head.
FINETUNE_METHODS = ("full", "frozen", "lora")
# Which hidden state(s) a classifier reads: the last real token's, or the mean of all of them.
POOLINGS = ("last", "mean")
# The attention projections LoRA can adapt (`MultiHeadAttention`'s Dense layers).
LORA_TARGETS = ("query", "key", "value", "attention_output")
# Where the user's prompt goes in an instruction-tuning template.
PROMPT_PLACEHOLDER = "{prompt}"


class _Config:
    """Shared behaviour: dict/JSON round trip with helpful errors on unknown keys."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            hints = "; ".join(
                f"{k!r} (did you mean {', '.join(difflib.get_close_matches(k, names)) or 'none'}?)"
                for k in unknown)
            raise ValueError(f"Unknown {cls.__name__} field(s): {hints}. Known fields: {names}")
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Config):
    """Architecture of a decoder-only language model (`TransformerLM`).

    The encoder–decoder `Transformer` of a translation run is described by the same
    fields (`Transformer.from_model_config`): both stacks share them, `vocab_size` is the
    one vocabulary of both languages and `max_length` the longest source or target.

    Attributes:
        vocab_size: V, number of token ids (set from the tokenizer when training).
        d_model: D, width of the residual stream.
        num_heads: H, attention heads; D must be divisible by H (Dh = D / H).
        num_layers: number of decoder blocks.
        dff: hidden width of each feed-forward network.
        max_length: the context: longest sequence the model accepts (and the
            size of its key/value cache).
        dropout: dropout rate on attention weights, sublayer outputs and embeddings.
        norm_placement: "pre" (LayerNorm before each sublayer; stable, GPT-2) or
            "post" (after the residual sum; the paper and the design document).
        position_encoding: "learned" (GPT-2), "sinusoidal" (the paper) or
            "rope" (rotary, applied to queries and keys).
        tie_embeddings: compute logits with the transposed token embedding.
        use_bias: biases in Dense layers and LayerNorm (nanoGPT's `bias`).
        activation: feed-forward activation: "gelu" (exact, with erf; nanoGPT),
            "gelu_tanh" (GELU's tanh approximation, GPT-2's `gelu_new`) or "relu".
        layer_norm_epsilon: LayerNorm epsilon.
        scale_embeddings: multiply token embeddings by sqrt(D) (the paper does;
            needed when fixed sinusoidal positions would otherwise dominate).
    """

    vocab_size: int = 10000
    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 6
    dff: int = 2048
    max_length: int = 512
    dropout: float = 0.1
    norm_placement: str = "pre"
    position_encoding: str = "learned"
    tie_embeddings: bool = True
    use_bias: bool = True
    activation: str = "gelu"
    layer_norm_epsilon: float = 1e-5
    scale_embeddings: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "dff", "max_length"):
            check_positive(name, getattr(self, name))
        check_divisible(self.d_model, self.num_heads)
        check_rate("dropout", self.dropout)
        check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        check_choice("position_encoding", self.position_encoding, POSITION_ENCODINGS)
        check_choice("activation", self.activation, ACTIVATIONS)
        require(is_number(self.layer_norm_epsilon) and self.layer_norm_epsilon > 0,
                 "layer_norm_epsilon", self.layer_norm_epsilon, "a positive number")
        if self.position_encoding == "rope":
            check_rotary_head_width(self.d_model, self.num_heads)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


@dataclasses.dataclass(frozen=True)
class DataConfig(_Config):
    """Where text comes from and how it becomes batches of token ids.

    Attributes:
        source: "builtin" (CPython's bundled documentation, offline everywhere),
            a file, directory or glob of UTF-8 text, or "tfds:NAME[:split]".
        tokenizer: "char", "byte", "wordpiece" or "sentencepiece" (learned from the
            data), or "gpt2" (GPT-2's BPE; only a run's own, from an imported checkpoint).
        vocab_size: target vocabulary for learned subword tokenizers
            (WordPiece, SentencePiece); char and byte ignore it.
        context_length: T, tokens per training window (must not exceed the
            model's `max_length`). Translation: the longest source or target (with
            its BOS/EOS) of a batch; longer training pairs are left out.
        batch_size: B, windows per global batch (summed over replicas). Translation:
            pairs per batch of the longest bucket; a batch of shorter pairs holds
            proportionally more, so every batch has about B·T token slots.
        val_fraction: share of the token stream held out for validation (taken
            from the end of the stream, as nanoGPT splits tiny Shakespeare).
            Translation: a seeded random share of the pairs.
        seed: shuffle seed.
        eval_source: a separate validation set (`--eval-data`), in the same
            forms as `source`; "" holds out `val_fraction` of `source` instead.
    """

    source: str = "builtin"
    tokenizer: str = "char"
    vocab_size: int = 8000
    context_length: int = 64
    batch_size: int = 12
    val_fraction: float = 0.1
    seed: int = 1337
    eval_source: str = ""

    def __post_init__(self):
        require(isinstance(self.source, str) and self.source != "", "source", self.source,
                 "a non-empty string")
        require(isinstance(self.eval_source, str), "eval_source", self.eval_source, "a string")
        check_choice("tokenizer", self.tokenizer, TOKENIZERS + PRETRAINED_TOKENIZERS)
        for name in ("vocab_size", "context_length", "batch_size"):
            check_positive(name, getattr(self, name))
        require(is_number(self.val_fraction) and 0.0 < self.val_fraction < 1.0,
                 "val_fraction", self.val_fraction, "a share in (0, 1)")
        check_non_negative("seed", self.seed)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Config):
    """Optimizer, learning-rate schedule, loop cadence and numerics.

    Attributes:
        steps: optimizer steps in the run.
        learning_rate: peak learning rate (ignored by the "noam" schedule,
            which derives it from d_model and warmup_steps).
        min_learning_rate: floor of the cosine decay.
        warmup_steps: linear warm-up steps.
        schedule: "cosine" (warm-up, then cosine to `min_learning_rate` at
            `steps`), "noam" (the paper: d_model^-0.5 * min(step^-0.5,
            step * warmup^-1.5)) or "constant" (after warm-up).
        beta1, beta2, epsilon: AdamW moments (nanoGPT: 0.9, 0.99; PyTorch eps).
        weight_decay: decoupled weight decay, not applied to norms and biases.
        clip_norm: global gradient-norm clip; 0 disables clipping.
        log_interval: log every N steps.
        eval_interval: evaluate, sample and checkpoint every M steps.
        eval_batches: validation batches per evaluation; 0 = the whole split.
        keep_checkpoints: how many recent checkpoints to keep (plus the best).
        sample_length: tokens in the sample printed at each evaluation.
        seed: seed for initialisation and dropout.
        precision: "float32", "mixed_bfloat16" or "mixed_float16".
        jit_compile: compile the train step with XLA.
        accumulate: micro-batches per optimizer step (gradient accumulation): each step
            reads `accumulate` batches of `batch_size` and makes one update, equal to one
            batch `accumulate` times larger (the loss is divided by the tokens of all of
            them, over every replica).
        steps_per_call: optimizer steps per compiled call, at most up to the next log or
            evaluation (Keras' `steps_per_execution`): Python and the host wait for the
            losses once per call, not once per step; NaN is still detected at every step.
        recompute: recompute each block's activations in the backward pass instead of
            keeping them (`tf.recompute_grad`): less memory, about a third more compute.
        label_smoothing: ε of the training loss (0 = plain cross-entropy; the
            Transformer paper §5.4 uses 0.1). Validation losses are never smoothed.
    """

    steps: int = 2000
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "cosine"
    beta1: float = 0.9
    beta2: float = 0.99
    epsilon: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    log_interval: int = 50
    eval_interval: int = 250
    eval_batches: int = 0
    keep_checkpoints: int = 3
    sample_length: int = 200
    seed: int = 1337
    precision: str = "float32"
    jit_compile: bool = False
    accumulate: int = 1
    steps_per_call: int = 100
    recompute: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self):
        for name in ("steps", "log_interval", "eval_interval", "keep_checkpoints", "accumulate",
                     "steps_per_call"):
            check_positive(name, getattr(self, name))
        for name in ("warmup_steps", "eval_batches", "sample_length", "seed"):
            check_non_negative(name, getattr(self, name))
        for name in ("learning_rate", "epsilon"):
            require(is_number(getattr(self, name)) and getattr(self, name) > 0, name,
                     getattr(self, name), "a positive number")
        for name in ("min_learning_rate", "weight_decay", "clip_norm"):
            require(is_number(getattr(self, name)) and getattr(self, name) >= 0, name,
                     getattr(self, name), "a non-negative number")
        for name in ("beta1", "beta2"):
            require(is_number(getattr(self, name)) and 0 <= getattr(self, name) < 1, name,
                     getattr(self, name), "in [0, 1)")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        check_rate("label_smoothing", self.label_smoothing)
        if self.schedule == "noam" and self.warmup_steps == 0:
            raise ValueError("The 'noam' schedule needs `warmup_steps` > 0. "
                             f"Received: warmup_steps={self.warmup_steps}")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(_Config):
    """How a fine-tuned run starts from a pre-trained one, and what its task needs to know.

    Written into the fine-tuned run's config.json (`RunConfig.finetune`), so the run records
    which run it started from and how; see docs/fine-tuning.md for the defaults' sources.

    Attributes:
        from_run: the pre-trained run directory whose weights and tokenizer are the start.
        pretrained_weights: False starts from random weights instead (same architecture,
            tokenizer and steps): the baseline that shows what pre-training brings.
        method: "full" (every weight trains), "frozen" (the pre-trained stack is fixed and
            only the task head trains: feature extraction) or "lora" (low-rank adapters on
            `lora_targets` and the task head train; merged into the weights on save).
        pooling: "classify": the features the head reads, the hidden state of the last real
            token ("last": with causal attention the only position that has read the whole
            text) or the mean over the real tokens ("mean").
        lora_rank: r, the adapters' rank.
        lora_alpha: α; the adapters' update is scaled by α / r.
        lora_targets: comma-separated attention projections to adapt, from
            `LORA_TARGETS` (the LoRA paper adapts query and value).
        labels: "classify": the class names, class id = position; learned from the
            training file (sorted), not set by hand.
        prompt_template: "instruct": the text around the user's prompt, with
            `{prompt}` once; the response follows it. Generation applies it too.
    """

    from_run: str = ""
    pretrained_weights: bool = True
    method: str = "full"
    pooling: str = "last"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = "query,value"
    labels: tuple = ()
    prompt_template: str = "Q: {prompt}\nA: "

    def __post_init__(self):
        require(isinstance(self.from_run, str) and self.from_run != "", "from_run",
                self.from_run, "the pre-trained run directory")
        require(isinstance(self.pretrained_weights, bool), "pretrained_weights",
                self.pretrained_weights, "True or False")
        check_choice("method", self.method, FINETUNE_METHODS)
        check_choice("pooling", self.pooling, POOLINGS)
        check_positive("lora_rank", self.lora_rank)
        require(is_number(self.lora_alpha) and self.lora_alpha > 0, "lora_alpha",
                self.lora_alpha, "a positive number")
        targets = self.lora_target_names
        require(bool(targets) and set(targets) <= set(LORA_TARGETS)
                and len(set(targets)) == len(targets), "lora_targets", self.lora_targets,
                f"distinct names from {', '.join(LORA_TARGETS)}, separated by commas")
        # JSON has lists, not tuples: the same labels must compare equal after a round trip.
        object.__setattr__(self, "labels", tuple(self.labels))
        require(all(isinstance(n, str) and n.strip() == n and n and "\t" not in n
                    for n in self.labels) and len(set(self.labels)) == len(self.labels),
                "labels", self.labels, "distinct non-empty names without surrounding spaces")
        require(isinstance(self.prompt_template, str)
                and self.prompt_template.count(PROMPT_PLACEHOLDER) == 1, "prompt_template",
                self.prompt_template, f"a text holding {PROMPT_PLACEHOLDER} exactly once")

    @property
    def lora_target_names(self) -> tuple:
        return tuple(t.strip() for t in str(self.lora_targets).split(",") if t.strip())

    def format_prompt(self, prompt: str) -> str:
        """The user's prompt inside `prompt_template` (what an instruct model reads)."""
        return apply_template(self.prompt_template, prompt)


def check_recompute(model: ModelConfig, train: TrainConfig) -> None:
    """A `ValueError` if `train.recompute` is asked of a model with dropout: the recomputed
    forward pass would draw other dropout masks than the first, so its gradients would be
    wrong. Checked with the configs, before a run directory is written; the model's stack
    checks it again (`TransformerStack.recompute`) for code that builds one directly."""
    if train.recompute and model.dropout > 0:
        raise ValueError("Recomputing activations (recompute) needs dropout 0: the recomputed "
                         "pass would draw other dropout masks. Received: "
                         f"dropout={model.dropout}; pass --dropout=0 or drop --recompute.")


def apply_template(template: str, prompt: str) -> str:
    """`template` with its `{prompt}` replaced by `prompt` (other braces are literal)."""
    before, _, after = template.partition(PROMPT_PLACEHOLDER)
    return before + prompt + after


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named model with the data and training settings it is meant for (and its task)."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    description: str = ""
    task: str = "lm"


PRESETS: dict[str, Preset] = {
    # nanoGPT's CPU "baby GPT" (README, "I only have a macbook"): 0.8 M parameters,
    # character-level tiny Shakespeare, 2000 steps. XLA because this model's step is many
    # small ops: on a quiet 2-core CPU it took 36 ms instead of 52 ms, with the same losses to
    # the printed digits (docs/training.md); `--no-jit-compile` turns it off.
    "tiny": Preset(
        model=ModelConfig(vocab_size=69, d_model=128, num_heads=4, num_layers=4, dff=512,
                          max_length=64, dropout=0.0, use_bias=False),
        data=DataConfig(tokenizer="char", context_length=64, batch_size=12),
        train=TrainConfig(steps=2000, learning_rate=1e-3, min_learning_rate=1e-4,
                          warmup_steps=100, beta2=0.99, weight_decay=0.1, clip_norm=1.0,
                          eval_interval=250, jit_compile=True),
        description="nanoGPT's CPU baby GPT: 4 layers, 4 heads, d_model 128, context 64"),
    # nanoGPT's config/train_shakespeare_char.py: 10.7 M parameters, for a GPU.
    "small": Preset(
        model=ModelConfig(vocab_size=69, d_model=384, num_heads=6, num_layers=6, dff=1536,
                          max_length=256, dropout=0.2, use_bias=False),
        data=DataConfig(tokenizer="char", context_length=256, batch_size=64),
        train=TrainConfig(steps=5000, learning_rate=1e-3, min_learning_rate=1e-4,
                          warmup_steps=100, beta2=0.99, weight_decay=0.1, clip_norm=1.0,
                          eval_interval=250),
        description="nanoGPT's shakespeare_char: 6 layers, 6 heads, d_model 384, context 256"),
    # The design document's §5.1 hyper-parameters: the paper's base model with
    # sinusoidal positions, post-LN and the paper's learning-rate schedule.
    "seed": Preset(
        model=ModelConfig(vocab_size=10000, d_model=512, num_heads=8, num_layers=6, dff=2048,
                          max_length=512, dropout=0.1, norm_placement="post",
                          position_encoding="sinusoidal", activation="relu",
                          scale_embeddings=True, tie_embeddings=True, use_bias=True),
        data=DataConfig(tokenizer="wordpiece", vocab_size=10000, context_length=128,
                        batch_size=32),
        train=TrainConfig(steps=100000, schedule="noam", warmup_steps=4000, beta1=0.9,
                          beta2=0.98, epsilon=1e-9, weight_decay=0.0, clip_norm=1.0,
                          eval_interval=1000),
        description="the design document's model: vocab 10000, d_model 512, 8 heads, "
                    "6 layers, dff 2048"),
    # A translator that learns the de-en sentence pairs (../shared/data, 19k pairs) in about
    # a quarter of an hour on a 2-core CPU (docs/translation.md): the paper's base recipe
    # scaled down — shared SentencePiece vocabulary with tied embeddings (§3.4), sinusoidal
    # positions × √D, label smoothing 0.1 (§5.4), β2 0.98 — with pre-LN, which trains without
    # the long warm-up post-LN needs, and a cosine schedule that ends with the step budget.
    "translation": Preset(
        model=ModelConfig(vocab_size=4000, d_model=256, num_heads=4, num_layers=3, dff=1024,
                          max_length=64, dropout=0.1, norm_placement="pre",
                          position_encoding="sinusoidal", scale_embeddings=True,
                          tie_embeddings=True, use_bias=True, activation="relu"),
        data=DataConfig(tokenizer="sentencepiece", vocab_size=4000, context_length=64,
                        batch_size=32, val_fraction=0.05),
        train=TrainConfig(steps=1000, learning_rate=1e-3, min_learning_rate=1e-5,
                          warmup_steps=100, beta1=0.9, beta2=0.98, weight_decay=0.0,
                          clip_norm=1.0, eval_interval=250, log_interval=50,
                          label_smoothing=0.1, jit_compile=True),
        description="an encoder-decoder translator: 3+3 layers, 4 heads, d_model 256, "
                    "shared 4k SentencePiece vocabulary",
        task="translation"),
}


def get_preset(name: str) -> Preset:
    """Returns the preset called `name`, or raises a `ValueError` listing the known ones."""
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}.{hint} Known presets: {sorted(PRESETS)}")
    return PRESETS[name]


def model_config_from_preset(name: str, **overrides: Any) -> ModelConfig:
    """The `ModelConfig` of preset `name` with `overrides` applied (names checked)."""
    return ModelConfig.from_dict({**get_preset(name).model.to_dict(), **overrides})


class Difference(NamedTuple):
    """One field that differs between two configs of the same kind."""

    field: str
    first: Any
    second: Any


def differences(first: _Config, second: _Config, ignore: tuple[str, ...] = ()) -> list[Difference]:
    """The fields (but those in `ignore`) whose values differ, in field order."""
    a, b = first.to_dict(), second.to_dict()
    return [Difference(k, a[k], b.get(k)) for k in a if k not in ignore and a[k] != b.get(k)]


def format_differences(found: list[Difference], first: str = "expected",
                       second: str = "found") -> str:
    """'d_model: expected 32, found 64; num_layers: ...' with the two sides named."""
    return "; ".join(f"{d.field}: {first} {d.first!r}, {second} {d.second!r}" for d in found)
