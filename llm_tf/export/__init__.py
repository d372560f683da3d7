"""Export: a run directory -> a SavedModel that serves without llm_tf.

    llm-tf export RUN_DIR [OUT_DIR]          # OUT_DIR defaults to RUN_DIR/saved_model
    llm_tf.export.export_run(run_dir)        # the same from Python; returns OUT_DIR

What the SavedModel offers follows the run's task (`config.json`'s "task"):

* "lm" — `generate`: prompts (strings) in, continuations out (`export/generator.py`).
* "translation" — `translate`: sources (strings), beam size and length penalty in,
  translations out (`export/translator.py`).
* "instruct" — the same generator, which puts each prompt inside the run's template.
* "classify" — `classify`: texts in, labels and probabilities out (`export/classifier.py`).

`files.py` holds what every export shares: atomic writes, assets, and loading
with a clear error for a directory that is not an llm_tf export.
"""

from __future__ import annotations

from pathlib import Path

from llm_tf.export import classifier, translator
from llm_tf.export.classifier import ClassifierModule, export_classifier
from llm_tf.export.files import CONFIG_ASSET, README_ASSET, load_saved_model
from llm_tf.export.generator import SIGNATURES, GenerationModule, export_model
from llm_tf.export.translator import TranslationModule
from llm_tf.rundir import RunDir
from llm_tf.saving import load

__all__ = ["CONFIG_ASSET", "README_ASSET", "SIGNATURES", "SIGNATURES_BY_TASK",
           "ClassifierModule", "GenerationModule", "TranslationModule", "export_classifier",
           "export_model", "export_run", "load_saved_model"]

# What the SavedModel of each task offers.
SIGNATURES_BY_TASK = {"lm": SIGNATURES, "instruct": SIGNATURES,
                      "translation": translator.SIGNATURES, "classify": classifier.SIGNATURES}


def export_run(run_dir, out_dir=None, jit_compile: bool = True) -> Path:
    """Exports the run in `run_dir` (weights, config, tokenizer) as a SavedModel.

    Args:
        run_dir: a run directory (a path or a `llm_tf.rundir.RunDir`).
        out_dir: where to write; default `RUN_DIR/saved_model`.
        jit_compile: compile the decode loop with XLA (generators).

    Returns:
        The export directory.
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    run = load(run_dir)
    out_dir = run_dir.saved_model_dir if out_dir is None else out_dir
    config = run.config
    if config.task == "translation":
        return translator.export_model(run.model, run.tokenizer, out_dir,
                                       jit_compile=jit_compile)
    if config.task == "classify":
        length = config.data.context_length if config.data else config.model.max_length
        return export_classifier(run.model, run.tokenizer, config.finetune.labels, length,
                                 out_dir)
    if config.task in ("lm", "instruct"):
        template = config.finetune.prompt_template if config.task == "instruct" else None
        return export_model(run.model, run.tokenizer, out_dir, jit_compile=jit_compile,
                            prompt_template=template)
    raise ValueError(f"llm-tf export does not know how to export a {config.task!r} run.")
