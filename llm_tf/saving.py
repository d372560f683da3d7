"""Whole runs in and out: a model and its tokenizer rebuilt from the run directory alone.

    llm_tf.load(run_dir)            -> LoadedRun(model, tokenizer, config)
    save_run(run_dir, model, tok)   -> a directory `load` can rebuild from

and the weights-file helpers the notebooks use (`save_weights`, `load_weights`),
which explain the `.weights.h5` rule to readers of the design document. The
folder's layout is `llm_tf.rundir`; weights files are `llm_tf.weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import keras

from llm_tf import weights as weight_files
from llm_tf.config import DataConfig, ModelConfig, TrainConfig, differences, format_differences
from llm_tf.models import Transformer, TransformerClassifier, TransformerLM
from llm_tf.rundir import RunConfig, RunDir
from llm_tf.tokenizers import PAD_ID, load_tokenizer


def save_weights(model, path) -> str:
    """`model.save_weights(path)` with the suffix checked, written atomically. Returns `path`."""
    return weight_files.save(model, path)


def load_weights(model, path) -> None:
    """`model.load_weights(path)` with clear errors for a wrong suffix, a missing file, or
    weights of another configuration (the differing fields are named)."""
    path = weight_files.check_file(path)
    if not model.built:
        model.build()
    if not isinstance(model, weight_files.StampedWeights):  # these check their own stamp
        weight_files.check_shapes(model, path)
    model.load_weights(path)


class LoadedRun(NamedTuple):
    model: keras.Model
    tokenizer: object
    config: RunConfig


def build_model(config: RunConfig, dtype=None, pad_id: int = PAD_ID) -> keras.Model:
    """The model that a run of `config.task` trains, unbuilt, from the run's configs.

    "lm", "instruct": `TransformerLM(config.model)`; "translation": the encoder–decoder
    `Transformer.from_model_config(config.model)`; "classify":
    `TransformerClassifier(config.model, len(labels), pooling)` (a LoRA run's weights file is
    already merged: it loads into the plain model). `pad_id` is the run tokenizer's padding
    id, which a classifier's pooling must know (an imported GPT-2 pads with its EOS, 50256,
    and its id 0 is a real token, "!").
    """
    if config.task in ("lm", "instruct"):
        return TransformerLM(config.model, dtype=dtype)
    if config.task == "translation":
        return Transformer.from_model_config(config.model, dtype=dtype)
    if config.task == "classify":
        return TransformerClassifier(config.model, len(config.finetune.labels),
                                     config.finetune.pooling, pad_id=pad_id, dtype=dtype)
    raise ValueError(f"No model is known for task {config.task!r}.")


def load(run_dir, weights: Optional[str] = None,
         model_config: Optional[ModelConfig] = None, dtype=None) -> LoadedRun:
    """Rebuilds tokenizer and model from a run directory alone.

    Args:
        run_dir: a directory written by `llm-tf train` (or `save_run`), or a `RunDir`.
        weights: weights file to load; default `RUN_DIR/model.weights.h5`.
        model_config: if given, the run's saved config must equal it; otherwise a
            `ValueError` names every field that differs.
        dtype: optional Keras dtype policy for the rebuilt model.

    Returns:
        `LoadedRun(model, tokenizer, config)`; the model is the one the run's task
        trains (`build_model`).
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    run = run_dir.read_config()
    if model_config is not None and model_config != run.model:
        raise ValueError(
            f"The weights in {str(run_dir)!r} belong to another model configuration: "
            + format_differences(differences(model_config, run.model)))
    tokenizer = load_tokenizer(run_dir.tokenizer_dir)
    model = build_model(run, dtype=dtype, pad_id=tokenizer.pad_id)
    load_weights(model, weights or run_dir.weights_file)
    return LoadedRun(model, tokenizer, run)


def save_run(run_dir, model, tokenizer, data: DataConfig = None,
             train: TrainConfig = None) -> Path:
    """Writes config.json, tokenizer assets and weights: a directory `load` can rebuild from.
    A `Transformer` makes a "translation" run, a `TransformerLM` an "lm" one."""
    run_dir = RunDir(run_dir)
    task = "translation" if isinstance(model, Transformer) else "lm"
    run_dir.write_config(RunConfig(model.config, data, train, task=task))
    tokenizer.save(run_dir.tokenizer_dir)
    save_weights(model, run_dir.weights_file)
    return run_dir.path
