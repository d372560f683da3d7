"""Fine-tuning (design document §2.2, §2.2.2): a pre-trained run adapted to a task.

    llm_tf.finetune(from_run, task, data, run_dir, eval_data=..., method=..., **fields)
    llm-tf finetune --from RUN --task TASK --data TRAIN [--eval-data TEST] --run-dir OUT

One concept per module:

    run.py         `finetune`: plan (configs, run directory) and run (data, steps, job)
    pretrained.py  the `--from` run: checks (tokenizer mismatch), copying its weights in
    defaults.py    the fine-tuning defaults and where they come from
    methods.py     full / frozen (feature extraction) / lora, applied to a built model
    jobs.py        each task's `Job` for `llm_tf.training.run.run_job`

docs/fine-tuning.md explains the choices and measures the three methods on real data.
"""

from llm_tf.fine_tuning.pretrained import PretrainedRunError, open_pretrained
from llm_tf.fine_tuning.run import FINETUNE_TASKS, finetune

__all__ = ["FINETUNE_TASKS", "PretrainedRunError", "finetune", "open_pretrained"]
