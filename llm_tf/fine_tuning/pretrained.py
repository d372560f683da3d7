"""The run a fine-tuning starts from (`--from RUN_DIR`): checked, and its weights copied in.

A pre-trained run is any run directory whose model is a `TransformerLM` (task "lm",
possibly itself fine-tuned, or "instruct") and whose training finished (it has
`model.weights.h5`). Its tokenizer is used unchanged: the fine-tuned run gets a copy.

**Tokenizer mismatch.** Token ids mean something only with the tokenizer the weights were
trained with. Two cases are refused (`PretrainedRunError`, one line and exit 2 from the
command): a `--from` run whose tokenizer has another vocabulary size than its weights
(tokenizer files replaced or edited), and resuming a fine-tuned run whose `tokenizer/`
differs from the `--from` run's (`check_same_tokenizer`: the files are compared byte for
byte with the ones the `--from` tokenizer saves).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from llm_tf import weights as weight_files
from llm_tf.models import TransformerLM
from llm_tf.rundir import RunConfig, RunDir
from llm_tf.tokenizers import load_tokenizer

# The tasks whose model is a `TransformerLM`, and so can be fine-tuned further.
LANGUAGE_MODEL_TASKS = ("lm", "instruct")


class PretrainedRunError(ValueError):
    """The `--from` run cannot be fine-tuned (the message says why)."""


class Pretrained(NamedTuple):
    run_dir: RunDir
    config: RunConfig
    tokenizer: object


def open_pretrained(path) -> Pretrained:
    """The checked pre-trained run at `path` (see the module docstring)."""
    try:
        run_dir = RunDir.open(path)
        config = run_dir.read_config()
    except (FileNotFoundError, ValueError) as error:
        raise PretrainedRunError(f"--from: {error}") from None
    if config.task not in LANGUAGE_MODEL_TASKS:
        raise PretrainedRunError(
            f"--from: {str(run_dir)!r} holds a {config.task!r} run; fine-tuning starts from a "
            f"language model (a run of task {' or '.join(map(repr, LANGUAGE_MODEL_TASKS))}).")
    if not run_dir.weights_file.is_file():
        raise PretrainedRunError(
            f"--from: {str(run_dir)!r} has no {RunDir.WEIGHTS_FILE} (a run that has not "
            "finished?): finish it with `llm-tf train --resume --run-dir` first.")
    try:
        tokenizer = load_tokenizer(run_dir.tokenizer_dir)
    except (FileNotFoundError, ValueError) as error:
        raise PretrainedRunError(f"--from: {error}") from None
    stamped = weight_files.read_stamp(run_dir.weights_file) or {}
    for where, vocab_size in (("config.json", config.model.vocab_size),
                              (RunDir.WEIGHTS_FILE, stamped.get("vocab_size",
                                                                config.model.vocab_size))):
        if tokenizer.vocab_size != vocab_size:
            raise PretrainedRunError(
                f"--from: tokenizer mismatch in {str(run_dir)!r}: its tokenizer has "
                f"{tokenizer.vocab_size} ids but the model in {where} was trained with "
                f"vocab_size={vocab_size}.")
    return Pretrained(run_dir, config, tokenizer)


def load_language_model(pretrained: Pretrained) -> TransformerLM:
    """The pre-trained `TransformerLM` with its final weights."""
    model = TransformerLM(pretrained.config.model)
    model.load_weights(str(pretrained.run_dir.weights_file))
    return model


def copy_stack_weights(source, target) -> int:
    """Copies the variables of the stack `source` into `target`, a stack of the same layout
    (e.g. `TransformerLM.decoder` into `TransformerClassifier.decoder`). LoRA adapters of
    `target` (variables named lora_*) have no counterpart and keep their initial values.
    Returns the number of variables copied."""
    targets = [v for v in target.weights if not v.name.startswith("lora_")]
    sources = list(source.weights)

    def relative(variable):  # "transformer_lm/decoder/block_0/..." -> "block_0/..."
        return variable.path.split(f"{source.name}/", 1)[-1]

    if len(targets) != len(sources) or any(
            relative(s) != t.path.split(f"{target.name}/", 1)[-1] or s.shape != t.shape
            for s, t in zip(sources, targets)):
        raise ValueError("The pre-trained stack and the model's do not have the same layout.")
    for s, t in zip(sources, targets):
        t.assign(s)
    return len(targets)


def tokenizer_fingerprint(directory) -> str:
    """sha256 over the names and bytes of the files in a tokenizer directory."""
    digest = hashlib.sha256()
    directory = Path(directory)
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(os.fsencode(path.relative_to(directory)) + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def check_same_tokenizer(run_dir: RunDir, pretrained: Pretrained) -> None:
    """A `PretrainedRunError` unless `run_dir`'s tokenizer files are the ones the `--from`
    run's tokenizer saves (what a fine-tuned run's tokenizer/ holds)."""
    with tempfile.TemporaryDirectory() as directory:
        expected = tokenizer_fingerprint(pretrained.tokenizer.save(directory))
    if tokenizer_fingerprint(run_dir.tokenizer_dir) != expected:
        raise PretrainedRunError(
            f"tokenizer mismatch: {str(run_dir)!r} was fine-tuned with another tokenizer than "
            f"the one in --from {str(pretrained.run_dir)!r}.")


def initialize_from(pretrained: Pretrained, model) -> None:
    """Copies the pre-trained weights into `model` (a `TransformerClassifier` or a
    `TransformerLM`, built, adapters or not): the stack, and an untied output projection.
    A classifier's head is new and keeps its initialisation."""
    source = load_language_model(pretrained)
    copy_stack_weights(source.decoder, model.decoder)
    target_head = getattr(model, "lm_head", None)
    if target_head is not None and source.lm_head is not None:
        target_head.kernel.assign(source.lm_head.kernel)
