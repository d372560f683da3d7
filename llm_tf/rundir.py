"""The run directory: one folder holds everything a run needs to be reproduced, resumed or served.

    RUN_DIR/
      config.json       {"task": ..., "model": ModelConfig, "data": DataConfig,
                         "train": TrainConfig, "finetune": FinetuneConfig (fine-tuned runs)}
      tokenizer/        the tokenizer's plain asset files (`Tokenizer.save`)
      checkpoints/      tf.train.CheckpointManager: model, optimizer, step (exact resume)
      metrics.jsonl     one JSON line per evaluation
      tensorboard/      scalars
      model.weights.h5  the final weights, Keras 3 format (config stamped in)
      saved_model/      the string-to-string SavedModel export

`RunDir` names these files and holds the rules about the folder; a command builds
one, once, with the constructor that states its intent, and passes it down:

    RunDir.create(path, overwrite)   a new run: absent or empty — or `overwrite`, which
                                     removes a previous run's files (only those)
    RunDir.resume(path, model)       continue a run: config, a checkpoint, the same model
    RunDir.open(path)                read a finished run (load, generate, export)

Errors are `RunDirectoryError` (a `ValueError`): commands print them as one line
and exit with code 2. Nothing here imports TensorFlow, so a bad directory is
refused before it loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

from llm_tf._validation import check_choice
from llm_tf.config import (
    FINETUNE_TASKS,
    TASKS,
    DataConfig,
    FinetuneConfig,
    ModelConfig,
    TrainConfig,
    differences,
    format_differences,
)


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The contents of `config.json`: the run's task and its configs.

    `task` (one of `config.TASKS`) says what the model was trained to do, and so
    which model class rebuilds it and which commands apply (`llm_tf.load`,
    `llm-tf export`, `llm-tf evaluate` read it). Files written before tasks
    existed have none: they are "lm" runs. `finetune` is present in runs that
    started from a pre-trained run (`llm-tf finetune`): which one, and how.
    """

    model: ModelConfig
    data: Optional[DataConfig] = None
    train: Optional[TrainConfig] = None
    task: str = "lm"
    finetune: Optional[FinetuneConfig] = None

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        if self.task in FINETUNE_TASKS and self.finetune is None:
            raise ValueError(f"A {self.task!r} run starts from a pre-trained one: its config "
                             "needs a `finetune` section (FinetuneConfig).")

    def to_dict(self) -> dict:
        sections = {name: None if value is None else value.to_dict()
                    for name, value in (("model", self.model), ("data", self.data),
                                        ("train", self.train))}
        finetune = {} if self.finetune is None else {"finetune": self.finetune.to_dict()}
        return {"task": self.task, **sections, **finetune}


class RunDir(os.PathLike):
    """A run directory (see the module docstring). `os.fspath(run_dir)` is its path."""

    CONFIG_FILE = "config.json"
    TOKENIZER_DIR = "tokenizer"
    WEIGHTS_FILE = "model.weights.h5"
    CHECKPOINT_DIR = "checkpoints"
    METRICS_FILE = "metrics.jsonl"
    TENSORBOARD_DIR = "tensorboard"
    SAVED_MODEL_DIR = "saved_model"
    # What a run writes; `create(overwrite=True)` removes these and nothing else.
    ENTRIES = (CONFIG_FILE, TOKENIZER_DIR, WEIGHTS_FILE, CHECKPOINT_DIR, METRICS_FILE,
               TENSORBOARD_DIR, SAVED_MODEL_DIR)

    def __init__(self, path):
        if "://" in os.fspath(path):
            # `Path` would fold "gs://b/run" into the local folder "gs:/b/run" and the run
            # would be written there without a word. Data may be remote (`tf.io.gfile`); the
            # run directory, whose config and tokenizer assets are written with Python's own
            # file functions, is local.
            raise RunDirectoryError(
                f"The run directory must be a local path, not {os.fspath(path)!r}: train into "
                "a local directory and copy it (e.g. `gsutil -m cp -r RUN gs://...`).")
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what lives where ----------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG_FILE

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / self.TOKENIZER_DIR

    @property
    def weights_file(self) -> Path:
        return self.path / self.WEIGHTS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / self.CHECKPOINT_DIR

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD_DIR

    @property
    def saved_model_dir(self) -> Path:
        return self.path / self.SAVED_MODEL_DIR

    # -- the three ways in -----------------------------------------------------------

    @classmethod
    def create(cls, path, overwrite: bool = False) -> "RunDir":
        """A directory ready for a new run (see the module docstring)."""
        run_dir = cls(path)
        path = run_dir.path
        if path.exists() and not path.is_dir():
            raise RunDirectoryError(f"the run directory {str(path)!r} is a file.")
        if path.is_dir() and any(path.iterdir()):
            is_run = run_dir.config_file.is_file()
            if not overwrite:
                what = "holds a run" if is_run else "is not empty"
                raise RunDirectoryError(
                    f"the run directory {str(path)!r} {what}: pass --resume to continue it, "
                    "--overwrite to start again, or choose another --run-dir.")
            if not is_run:
                raise RunDirectoryError(
                    f"refusing to --overwrite {str(path)!r}: it is not empty and holds no "
                    f"llm_tf run ({cls.CONFIG_FILE} is missing); choose another --run-dir.")
            for name in cls.ENTRIES:
                entry = path / name
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.exists():
                    entry.unlink()
        run_dir.check_writable()
        return run_dir

    @classmethod
    def resume(cls, path, model: Optional[ModelConfig] = None) -> "RunDir":
        """A run that can continue: its config, a checkpoint, and (if given) the same model.

        The model's `vocab_size` is not compared: it always follows the run's tokenizer.
        """
        run_dir = cls(path)
        if not run_dir.path.is_dir() or not any(run_dir.path.iterdir()):
            raise RunDirectoryError(f"--resume: the run directory {str(run_dir)!r} is empty or "
                                    "does not exist; there is nothing to resume.")
        try:
            saved = run_dir.read_config()
        except (FileNotFoundError, ValueError) as error:
            raise RunDirectoryError(f"--resume: {error}") from None
        if not run_dir.has_checkpoint():
            raise RunDirectoryError(f"--resume: {str(run_dir)!r} has no checkpoint yet "
                                    f"({str(run_dir.checkpoint_dir)!r} is empty); start it "
                                    "again with --overwrite.")
        if model is not None:
            run_dir.check_model(model, saved.model)
        run_dir.check_writable()
        return run_dir

    @classmethod
    def open(cls, path) -> "RunDir":
        """A directory holding a run (its config is read, to fail early on a bad one)."""
        run_dir = cls(path)
        run_dir.read_config()
        return run_dir

    # -- contents ------------------------------------------------------------------------

    def read_config(self) -> RunConfig:
        """`config.json` parsed; a `FileNotFoundError`/`ValueError` naming the file if bad."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"Run directory {str(self)!r} does not exist.")
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"{str(self.config_file)!r} not found: {str(self)!r} is not an llm_tf run "
                "directory (train one with `llm-tf train --run-dir DIR`).")
        try:
            payload = json.loads(self.config_file.read_text())
            return RunConfig(
                model=ModelConfig.from_dict(payload["model"]),
                data=DataConfig.from_dict(payload["data"]) if payload.get("data") else None,
                train=TrainConfig.from_dict(payload["train"]) if payload.get("train") else None,
                task=payload.get("task", "lm"),
                finetune=(FinetuneConfig.from_dict(payload["finetune"])
                          if payload.get("finetune") else None))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{str(self.config_file)!r} is not a valid llm_tf config: "
                             f"{error}") from None

    def write_config(self, config: RunConfig) -> Path:
        """Writes `config.json` atomically (a temporary file, then a rename)."""
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = self.config_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self.config_file)
        return self.config_file

    def check_model(self, model: ModelConfig, saved: Optional[ModelConfig] = None) -> None:
        """A `RunDirectoryError` naming the fields in which `model` differs from the run's
        (`saved`, default read from `config.json`); `vocab_size` follows the tokenizer."""
        saved = saved or self.read_config().model
        changed = differences(saved, model, ignore=("vocab_size",))
        if changed:
            raise RunDirectoryError(
                f"--resume: the model asked for differs from the one saved in {str(self)!r}: "
                + format_differences(changed, "saved", "asked for"))

    def has_checkpoint(self) -> bool:
        """Whether checkpoints/ has an index naming a checkpoint whose files exist.

        Read without TensorFlow (the `checkpoint` file is a text proto), so that a
        command rejects a bad directory before TensorFlow loads.
        """
        try:
            with open(self.checkpoint_dir / "checkpoint", encoding="utf-8") as f:
                first = f.readline()
        except OSError:
            return False
        name = first.partition(":")[2].strip().strip('"')
        path = name if os.path.isabs(name) else os.path.join(self.checkpoint_dir, name)
        return bool(name) and os.path.isfile(path + ".index")

    def check_writable(self) -> None:
        """Creates the directory if needed and writes a probe file, or `RunDirectoryError`."""
        probe = self.path / f".write-test-{uuid.uuid4().hex}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise RunDirectoryError(f"the run directory {str(self)!r} is not writable "
                                    f"({reason}); choose another with --run-dir.") from None
