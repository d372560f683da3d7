"""The run directory: everything needed to rebuild a model lives in one folder.

Layout (written by `llm-tf train`, read by `llm_tf.load`, `llm-tf generate/export`)::

    RUN_DIR/
      config.json          {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
      tokenizer/           the tokenizer's plain asset files (`Tokenizer.save`)
      model.weights.h5     the final (or best) weights, Keras 3 format
      checkpoints/         tf.train.CheckpointManager: model, optimizer, step, data position
      metrics.jsonl        one JSON line per evaluation
      saved_model/         the string-to-string SavedModel export

The design document saves `encoder_weights.h5`; Keras 3 insists on the
`.weights.h5` suffix for weights-only files, and `load_weights` here says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple, Optional

from llm_tf.config import DataConfig, ModelConfig, TrainConfig, describe_difference

CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
WEIGHTS_FILE = "model.weights.h5"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SAVED_MODEL_DIR = "saved_model"


class RunConfig(NamedTuple):
    model: ModelConfig
    data: Optional[DataConfig]
    train: Optional[TrainConfig]


def write_config(run_dir, model: ModelConfig, data: DataConfig = None,
                 train: TrainConfig = None) -> Path:
    """Writes `config.json` atomically (temporary file, then rename) and returns its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"model": model.to_dict(),
               "data": None if data is None else data.to_dict(),
               "train": None if train is None else train.to_dict()}
    path = run_dir / CONFIG_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


def read_config(run_dir) -> RunConfig:
    """Reads `RUN_DIR/config.json`; a clear `FileNotFoundError`/`ValueError` if absent or bad."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {str(run_dir)!r} does not exist.")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: {str(run_dir)!r} is not an llm_tf run directory "
            "(train one with `llm-tf train --run-dir DIR`).")
    try:
        payload = json.loads(path.read_text())
        return RunConfig(
            model=ModelConfig.from_dict(payload["model"]),
            data=DataConfig.from_dict(payload["data"]) if payload.get("data") else None,
            train=TrainConfig.from_dict(payload["train"]) if payload.get("train") else None)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{str(path)!r} is not a valid llm_tf config: {error}") from None


def check_weights_path(path) -> str:
    """Returns `path` as a string if it ends in `.weights.h5`, else explains why it must."""
    path = str(path)
    if not path.endswith(".weights.h5"):
        suggestion = (path[:-3] if path.endswith(".h5") else path) + ".weights.h5"
        raise ValueError(
            f"Weights files must end in '.weights.h5' (Keras 3). Received: {path!r}. "
            f"The design document's './encoder_weights.h5' becomes "
            f"'./encoder.weights.h5'; here, use {suggestion!r}.")
    return path


def save_weights(model, path) -> str:
    """`model.save_weights` with the suffix checked; written to a temporary file, then renamed,
    so a crash mid-write never leaves a truncated weights file in place."""
    path = check_weights_path(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temporary = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(temporary)  # a TransformerLM stamps its config into the file
    os.replace(temporary, path)
    return path


# The model's config, written into the weights file as an HDF5 attribute, so that
# loading into another architecture names the field instead of Keras' "N objects
# could not be loaded" (or, worse, a silent partial load: 1 layer of a 2-layer file).
CONFIG_ATTRIBUTE = "llm_tf_model_config"
# Fields that change no weight and may differ between training and inference.
_NON_ARCHITECTURE_FIELDS = ("dropout",)


def stamp_config(path, config: ModelConfig) -> None:
    """Writes `config` into the weights file at `path` (an HDF5 attribute)."""
    import h5py

    with h5py.File(path, "a") as f:
        f.attrs[CONFIG_ATTRIBUTE] = json.dumps(config.to_dict(), sort_keys=True)


def _file_shapes(h5_file) -> list:
    """Shapes of every weight array in a Keras 3 `.weights.h5` file."""
    import h5py

    shapes = []
    h5_file.visititems(lambda name, item: shapes.append(tuple(item.shape))
                       if isinstance(item, h5py.Dataset) else None)
    return shapes


def check_weights_fit(model, path) -> None:
    """A `ValueError` naming what differs if the weights file at `path` was saved from
    a model of another configuration than `model.config` (or, for files without a
    stamped config, if its weight shapes differ from the model's)."""
    import h5py

    with h5py.File(path, "r") as f:
        stamped = f.attrs.get(CONFIG_ATTRIBUTE)
        shapes = None if stamped is not None else _file_shapes(f)
    config = getattr(model, "config", None)
    if stamped is not None and config is not None:
        try:
            saved = ModelConfig.from_dict(json.loads(stamped))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path!r} holds an unreadable model config: {error}") from None
        differences = [d for d in describe_difference(config, saved)
                       if d.split(":")[0] not in _NON_ARCHITECTURE_FIELDS]
        if differences:
            raise ValueError(
                f"The weights in {path!r} belong to another model configuration: "
                + "; ".join(differences) + " (expected = the model being loaded into, "
                "found = the model that saved the file).")
    elif shapes is not None:
        expected = sorted(tuple(v.shape) for v in model.weights)
        if sorted(shapes) != expected:
            missing = sorted(set(expected) - set(shapes))
            extra = sorted(set(shapes) - set(expected))
            raise ValueError(
                f"The weights in {path!r} do not fit this model: the file holds "
                f"{len(shapes)} arrays, the model {len(expected)}; shapes only in the model: "
                f"{missing or 'none'}; only in the file: {extra or 'none'}. "
                f"It was saved from another configuration (model: {config}).")


def check_weights_file(path) -> str:
    """`check_weights_path`, and a `FileNotFoundError` naming the file if it is missing."""
    path = check_weights_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file {path!r} does not exist.")
    return path


def load_weights(model, path) -> None:
    """`model.load_weights` with clear errors for a wrong suffix, a missing file, or
    weights of another configuration (the differing fields are named)."""
    from llm_tf.models import TransformerLM

    path = check_weights_file(path)
    if not model.built:
        model.build()
    if not isinstance(model, TransformerLM):  # TransformerLM.load_weights checks itself
        check_weights_fit(model, path)
    model.load_weights(path)


class LoadedRun(NamedTuple):
    model: "TransformerLM"  # noqa: F821
    tokenizer: object
    config: RunConfig


def load(run_dir, weights: Optional[str] = None, model_config: Optional[ModelConfig] = None,
         dtype=None) -> LoadedRun:
    """Rebuilds tokenizer and model from a run directory alone.

    Args:
        run_dir: a directory written by `llm-tf train` (or `save_run`).
        weights: weights file to load; default `RUN_DIR/model.weights.h5`.
        model_config: if given, the run's saved config must equal it; otherwise a
            `ValueError` names every field that differs.
        dtype: optional Keras dtype policy for the rebuilt model.

    Returns:
        `LoadedRun(model, tokenizer, config)`.
    """
    from llm_tf.models import TransformerLM
    from llm_tf.tokenizers import load_tokenizer

    run = read_config(run_dir)
    if model_config is not None and model_config != run.model:
        raise ValueError(
            f"The weights in {str(run_dir)!r} belong to another model configuration: "
            + "; ".join(describe_difference(model_config, run.model)))
    tokenizer = load_tokenizer(Path(run_dir) / TOKENIZER_DIR)
    model = TransformerLM(run.model, dtype=dtype)
    load_weights(model, weights or Path(run_dir) / WEIGHTS_FILE)
    return LoadedRun(model, tokenizer, run)


def save_run(run_dir, model, tokenizer, data: DataConfig = None,
             train: TrainConfig = None) -> Path:
    """Writes config.json, tokenizer assets and weights: a directory `load` can rebuild from."""
    run_dir = Path(run_dir)
    write_config(run_dir, model.config, data, train)
    tokenizer.save(run_dir / TOKENIZER_DIR)
    save_weights(model, run_dir / WEIGHTS_FILE)
    return run_dir
