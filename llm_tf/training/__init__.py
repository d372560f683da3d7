"""Pre-training: the train step, schedules, checkpoints, distribution and the loop.

* `schedules`   — warm-up + cosine (nanoGPT), the paper's `noam`, constant.
* `optimizer`   — AdamW with PyTorch's epsilon; decay on matrices only.
* `losses`      — cross-entropy over non-pad tokens; a Keras loss and perplexity metric.
* `step`        — `TrainStep` (GradientTape, all-reduce, clip, apply) and `EvalStep`.
* `distribute`  — `get_strategy()`: TPU, multi-worker, mirrored or default.
* `checkpoints` — `Checkpoints`: last K and best, exact resume.
* `reporting`   — progress bar / plain lines, metrics.jsonl, TensorBoard.
* `loop`        — `run_loop`: the readable training loop.
* `run`         — `train(model_config, data_config, train_config, run_dir)`.
* `fit`         — the same loss, schedule and metrics through `model.fit`.
"""

import importlib

# name -> submodule defining it, imported on first use, so that `llm-tf train`
# parses its arguments (and rejects bad ones) without importing TensorFlow.
# (`llm-tf train` itself is llm_tf/commands/train.py.)
_LAZY = {
    "AdamW": "optimizer", "make_optimizer": "optimizer",
    "Checkpoints": "checkpoints",
    "EvalStep": "step", "TrainStep": "step",
    "LanguageModelLoss": "losses", "Perplexity": "losses", "token_loss_sum": "losses",
    "LoopResult": "loop", "TrainingDiverged": "loop", "run_loop": "loop",
    "Noam": "schedules", "WarmupConstant": "schedules", "WarmupCosine": "schedules",
    "make_schedule": "schedules",
    "TrainRun": "run", "train": "run",
    "fit": "fit",
    "get_strategy": "distribute", "is_chief": "distribute",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"llm_tf.training.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llm_tf.training' has no attribute {name!r}")
