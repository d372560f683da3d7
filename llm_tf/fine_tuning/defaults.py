"""Fine-tuning's default settings, and where each comes from (docs/fine-tuning.md measures them).

A fine-tuned run starts from its pre-trained run's configs: the model (architecture,
unchangeable but for `dropout`), the tokenizer, the optimizer's betas, clipping, precision
and XLA. What fine-tuning changes:

* **How long.** Classifiers and instruction tuning count *epochs* over their examples:
  BERT fine-tunes for 2–4 (Devlin et al. 2019, §A.3); we default to 3. Continued
  pre-training ("lm") has no epochs worth the name (every offset is a window): a number of
  steps, a quarter of the tiny preset's pre-training.
* **Learning rate.** Fine-tuning moves weights that already work, so it uses less than
  pre-training's peak: BERT 2e-5–5e-5 for a 110 M-parameter model pre-trained at 1e-4;
  nanoGPT's `finetune_shakespeare` 3e-5 (GPT-2 XL, pre-trained at 1.5e-4/6e-4): a third to a
  twentieth of the pre-training peak. Small models take larger rates: for the `tiny` preset
  (pre-trained at 1e-3) full fine-tuning defaults to 3e-4, a third of it. A head on frozen
  features can take a rate ten times larger, and LoRA's adapters too (the LoRA paper tunes
  them 10× above full fine-tuning: 4e-4–5e-4 against RoBERTa's 1e-5–3e-5).
  docs/fine-tuning.md reports what each default gives on the spam task.
* **Schedule.** Linear warm-up over the first 10% of steps (BERT; RoBERTa 6%), then the
  cosine decay the pre-training used, to a tenth of the peak (nanoGPT's floor). Continued
  pre-training keeps a constant rate (nanoGPT's finetune: `decay_lr = False`).
* **Weight decay** 0.01 (BERT's fine-tuning), not pre-training's 0.1.
* **Batch.** 32 examples (BERT's fine-tuning batch) for classification and instruction
  tuning; continued pre-training keeps the pre-training batch.
"""

from __future__ import annotations

import math
import os

from llm_tf.config import DataConfig, FinetuneConfig, TrainConfig
from llm_tf.rundir import RunConfig

EPOCHS = {"classify": 3.0, "instruct": 3.0}
LM_STEPS = 500
WARMUP_FRACTION = 0.1
MIN_LEARNING_RATE_FRACTION = 0.1
WEIGHT_DECAY = 0.01
BATCH_SIZE = {"classify": 32, "instruct": 32}
# (task, method) -> peak learning rate; see the module docstring and docs/fine-tuning.md.
LEARNING_RATES = {
    ("classify", "full"): 3e-4, ("classify", "frozen"): 3e-3, ("classify", "lora"): 3e-3,
    ("instruct", "full"): 1e-3, ("instruct", "lora"): 3e-3,
    ("lm", "full"): 1e-4, ("lm", "lora"): 1e-3,
}
# Fields a schedule derives from the number of steps unless the user set them.
DERIVED_FIELDS = ("warmup_steps", "eval_interval", "log_interval", "min_learning_rate")


def default_config(task: str, method: str, pretrained: RunConfig, from_run: str, data: str,
                   eval_data: str = "") -> RunConfig:
    """The fine-tuned run's starting configs (steps and schedule still to be `scheduled`)."""
    if (task, method) not in LEARNING_RATES:
        raise ValueError(f"--method {method} does not apply to --task {task}: a language model "
                         "has no head to train on frozen features (use full or lora).")
    source_data = pretrained.data or DataConfig()
    source_train = pretrained.train or TrainConfig()
    model = pretrained.model
    context = (min(source_data.context_length, model.max_length) if task == "lm"
               else model.max_length)
    # Files by their absolute path: a resumed run may start in another working directory.
    data, eval_data = (os.path.abspath(p) if p and os.path.exists(p) else p
                       for p in (data, eval_data or ""))
    data_config = source_data.replace(
        source=data, eval_source=eval_data, context_length=context,
        batch_size=BATCH_SIZE.get(task, source_data.batch_size))
    learning_rate = LEARNING_RATES[(task, method)]
    train_config = source_train.replace(
        learning_rate=learning_rate, schedule="constant" if task == "lm" else "cosine",
        weight_decay=WEIGHT_DECAY,
        sample_length=0 if task == "classify" else min(source_train.sample_length, 100))
    finetune = FinetuneConfig(from_run=os.path.abspath(from_run), method=method)
    return RunConfig(model, data_config, train_config, task=task, finetune=finetune)


def scheduled(train: TrainConfig, steps: int, explicit=(), evaluations_every: int = 0
              ) -> TrainConfig:
    """`train` for a run of `steps` steps: warm-up, evaluation and logging cadence and the
    cosine floor follow the length, except the fields named in `explicit` (set by the user).

    Args:
        evaluations_every: evaluate every this many steps (an epoch); 0 = five times a run.
    """
    derived = {
        "warmup_steps": 0 if train.schedule == "constant" else round(WARMUP_FRACTION * steps),
        "eval_interval": max(1, min(steps, evaluations_every or math.ceil(steps / 5))),
        "min_learning_rate": MIN_LEARNING_RATE_FRACTION * train.learning_rate,
    }
    derived["log_interval"] = max(1, min(train.log_interval, derived["eval_interval"]))
    changes = {k: v for k, v in derived.items() if k not in explicit}
    return train.replace(steps=steps, **changes)
