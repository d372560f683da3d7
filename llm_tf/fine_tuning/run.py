"""`finetune`: a pre-trained run adapted to a task, in a run directory of its own (§2.2).

    from llm_tf import finetune
    run = finetune("runs/tiny", "classify", "spam.train.tsv", "runs/spam",
                   eval_data="spam.test.tsv", method="lora", lora_rank=4)

The flow (`llm-tf finetune` runs the same, with its fields given as text):

    plan:  --from run checked (pretrained.py) -> starting configs (defaults.py)
           -> the caller's fields -> the data read and checked, classes learned
           (classify) -> the run directory (new, or resumed): bad input changes nothing
    run:   steps from epochs, schedule
           -> the task's Job (jobs.py) -> run_job: checkpoints, metrics.jsonl, weights

What may be set: every field of `DataConfig`, `TrainConfig` and `FinetuneConfig` except
those that would contradict the pre-trained run (`refusal` says which and why), and the
model's `dropout`. A resumed run keeps how it was fine-tuned (its `finetune` section).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from llm_tf.config import DataConfig, FinetuneConfig, ModelConfig, TrainConfig, check_recompute
from llm_tf.data import (
    epoch_steps,
    load_corpus,
    read_instructions,
    read_labelled_texts,
    split_held_out,
)
from llm_tf.fine_tuning import defaults
from llm_tf.fine_tuning.jobs import classify_job, instruct_job, language_model_job
from llm_tf.fine_tuning.pretrained import (
    Pretrained,
    PretrainedRunError,
    check_same_tokenizer,
    open_pretrained,
)
from llm_tf.rundir import RunConfig, RunDir, RunDirectoryError
from llm_tf.tokenizers import load_tokenizer
from llm_tf.training.distribute import get_strategy
from llm_tf.training.run import TrainRun, run_job

FINETUNE_TASKS = ("lm", "classify", "instruct")
# The configs whose fields a fine-tuning run may set, by their key in config.json.
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
            "finetune": FinetuneConfig}
_FIELDS = {section: {f.name for f in dataclasses.fields(cls)} for section, cls in
           SECTIONS.items()}


def refusal(field: str, resume: bool = False) -> Optional[str]:
    """Why `field` may not be set on a fine-tuning run, or None if it may."""
    if field in _FIELDS["model"] and field not in _FIELDS["data"] and field != "dropout":
        return "the architecture is the pre-trained run's (--from); only --dropout can change"
    reasons = {"tokenizer": "the tokenizer is the pre-trained run's, unchanged",
               "vocab_size": "the tokenizer is the pre-trained run's, unchanged",
               "source": "give the training data with --data",
               "eval_source": "give the evaluation data with --eval-data",
               "from_run": "give the pre-trained run with --from",
               "method": "choose the method with --method",
               "labels": "the classes are learned from the training file"}
    if field in reasons:
        return reasons[field]
    if resume and field in _FIELDS["finetune"]:
        return "a resumed run keeps how it was fine-tuned (its config.json 'finetune' section)"
    return None


@dataclasses.dataclass
class Plan:
    """A fine-tuning run before its data is read.

    Attributes:
        config: the run's configs (classes and steps still to come from the data).
        run_dir: checked for the intent (`RunDir.create` or `RunDir.resume`).
        pretrained: the `--from` run (None when a resumed run was not given one).
        resume: continue the run in `run_dir`.
        explicit: the fields the user set (kept as set, not derived from the run's length).
        examples: the task's training and evaluation examples (`read_examples`).
        epochs: the run's length in passes over the examples (None: the default, or
            `steps`).
    """

    config: RunConfig
    run_dir: RunDir
    pretrained: Optional[Pretrained]
    resume: bool
    explicit: frozenset = frozenset()
    examples: Optional["Examples"] = None
    epochs: Optional[float] = None


@dataclasses.dataclass
class Examples:
    """The examples of a classify or instruct run (an lm run reads its corpus as it trains).

    Attributes:
        train, eval: `LabelledTexts` or `InstructionPairs`.
        eval_name: "evaluation" (from --eval-data) or "held-out" (split from --data).
        labels: the classes (classify), learned from the training file.
    """

    train: object
    eval: object
    eval_name: str
    labels: tuple = ()


def read_examples(config: RunConfig, resume: bool = False) -> Optional[Examples]:
    """The training and evaluation examples `config.data` names (None for task "lm", whose
    corpus is only checked to exist); every bad line is a `ValueError` naming it.

    A new classifier learns its classes from the training file; a resumed one keeps its own
    (a class missing from the file then is an error, not a silently smaller head)."""
    data, task = config.data, config.task
    if task == "lm":
        load_corpus(data.source)
        return None
    if task == "classify":
        train = read_labelled_texts(data.source, config.finetune.labels if resume else None)
        evaluation = (read_labelled_texts(data.eval_source, train.names)
                      if data.eval_source else None)
        labels = train.names
    else:
        train = read_instructions(data.source)
        evaluation = read_instructions(data.eval_source) if data.eval_source else None
        labels = ()
    if evaluation is not None:
        return Examples(train, evaluation, "evaluation", labels)
    train, evaluation = split_held_out(train, data.val_fraction, data.seed)
    return Examples(train, evaluation, "held-out", labels)


def new_plan(from_run, task, data, run_dir, *, eval_data: str = "", method: str = "full",
             overwrite: bool = False, fields: Optional[dict] = None,
             epochs: Optional[float] = None) -> Plan:
    """The plan of a new run: the `--from` run checked, its defaults with `fields` set, then
    `run_dir` created (`RunDir.create`), so that bad input leaves nothing behind."""
    check_task(task)
    if not data:
        raise ValueError("--data is required: the training file (or text, for --task lm).")
    pretrained = open_pretrained(from_run)
    config = defaults.default_config(task, method, pretrained.config, from_run, data,
                                     eval_data)
    config = with_fields(config, fields or {}, resume=False)
    check_length(config, epochs, fields or ())
    check_recompute(config.model, config.train)
    examples = read_examples(config)  # before the directory: bad data leaves a run untouched
    return Plan(config, RunDir.create(run_dir, overwrite), pretrained, resume=False,
                explicit=frozenset(fields or ()), examples=examples, epochs=epochs)


def resumed_plan(run_dir, from_run=None, task=None, method=None,
                 fields: Optional[dict] = None, epochs: Optional[float] = None) -> Plan:
    """The plan that continues the fine-tuned run in `run_dir` (its saved configs, `fields`
    set); a `from_run`, `task` or `method` given must be the run's own."""
    run_dir = RunDir.resume(run_dir)
    config = run_dir.read_config()
    if config.finetune is None:
        raise RunDirectoryError(f"--resume: {str(run_dir)!r} is not a fine-tuned run; continue "
                                "it with `llm-tf train --resume`.")
    if task is not None and task != config.task:
        raise ValueError(f"--resume: {str(run_dir)!r} is a {config.task!r} run, not {task!r}.")
    if method is not None and method != config.finetune.method:
        raise ValueError(f"--resume: {str(run_dir)!r} was fine-tuned with --method "
                         f"{config.finetune.method}, not {method}.")
    pretrained = None
    if from_run is not None:
        if os.path.abspath(from_run) != config.finetune.from_run:
            raise PretrainedRunError(
                f"--resume: {str(run_dir)!r} started from {config.finetune.from_run!r}, not "
                f"from {os.path.abspath(from_run)!r}.")
        pretrained = open_pretrained(from_run)
        check_same_tokenizer(run_dir, pretrained)
    config = with_fields(config, fields or {}, resume=True)
    check_length(config, epochs, fields or ())
    return Plan(config, run_dir, pretrained, resume=True, explicit=frozenset(fields or ()),
                examples=read_examples(config, resume=True), epochs=epochs)


def with_fields(config: RunConfig, fields: dict, resume: bool = False) -> RunConfig:
    """`config` with `fields` ({field: value}, typed) set in every section that has them."""
    for field in fields:
        reason = refusal(field, resume)
        if reason:
            raise ValueError(f"--{field} cannot be set here: {reason}.")
    unknown = set(fields) - set().union(*_FIELDS.values())
    if unknown:
        raise ValueError(f"Unknown field(s) {sorted(unknown)}: see `llm-tf finetune --help`.")
    sections = {}
    for section, names in _FIELDS.items():
        current = getattr(config, section)
        changes = {k: v for k, v in fields.items() if k in names}
        if changes:
            current = (current or SECTIONS[section]()).replace(**changes)
        sections[section] = current
    return dataclasses.replace(config, **sections)


def check_task(task) -> None:
    if task not in FINETUNE_TASKS:
        raise ValueError(f"--task must be one of {', '.join(FINETUNE_TASKS)}. Received: "
                         f"--task {task!r}")


def check_length(config: RunConfig, epochs: Optional[float], explicit=()) -> None:
    """The context fits the model, and the run's length is given at most once, sensibly."""
    data, task = config.data, config.task
    if data.context_length > config.model.max_length:
        raise ValueError(f"`context_length`={data.context_length} is longer than the "
                         f"pre-trained model's `max_length`={config.model.max_length}.")
    if epochs is not None:
        if task == "lm":
            raise ValueError("--epochs counts passes over examples (classify, instruct); "
                             "continued pre-training (--task lm) takes --steps.")
        if "steps" in explicit:
            raise ValueError("--epochs and --steps both set the run's length: give one.")
        if not (isinstance(epochs, (int, float)) and epochs > 0):
            raise ValueError(f"--epochs must be a positive number. Received: {epochs!r}")


def run_plan(plan: Plan, *, stop_at: Optional[int] = None,
             strategy=None, stream=None, tty: Optional[bool] = None,
             sample: bool = True) -> TrainRun:
    """Settles the classes and the steps from the plan's examples, and trains (`run_job`)."""
    config, resume = plan.config, plan.resume
    task, data = config.task, config.data
    epochs = plan.epochs
    tokenizer = (load_tokenizer(plan.run_dir.tokenizer_dir) if resume
                 else plan.pretrained.tokenizer)

    examples = plan.examples
    train_set = eval_set = None
    eval_name = "evaluation"
    if examples is not None:
        train_set, eval_set, eval_name = examples.train, examples.eval, examples.eval_name
    if task == "classify":
        config = dataclasses.replace(config, finetune=config.finetune.replace(
            labels=examples.labels))

    train = config.train
    epoch = epoch_steps(len(train_set), data.batch_size, 1) if train_set is not None else 0
    if epochs is not None:
        steps = epoch_steps(len(train_set), data.batch_size, epochs)
    elif not resume and "steps" not in plan.explicit:
        steps = (epoch_steps(len(train_set), data.batch_size, defaults.EPOCHS[task])
                 if train_set is not None else defaults.LM_STEPS)
    else:
        steps = train.steps
    if resume:
        train = train.replace(steps=steps)  # a resumed run keeps its schedule
    else:
        train = defaults.scheduled(train, steps, plan.explicit, evaluations_every=epoch)
    config = dataclasses.replace(config, train=train)

    pretrained = None if resume else plan.pretrained
    if task == "classify":
        job = classify_job(config, tokenizer, pretrained, train_set, eval_set, eval_name)
    elif task == "instruct":
        job = instruct_job(config, tokenizer, pretrained, train_set, eval_set, eval_name,
                           sample=sample)
    else:
        job = language_model_job(config, tokenizer, pretrained, sample=sample)
    return run_job(job, plan.run_dir, resume=resume, strategy=strategy or get_strategy(),
                   stream=stream, tty=tty, stop_at=stop_at)


def finetune(from_run=None, task=None, data=None, run_dir=None, *, eval_data: str = "",
             method: Optional[str] = None, epochs: Optional[float] = None, resume: bool = False,
             overwrite: bool = False, stop_at: Optional[int] = None, strategy=None, stream=None,
             tty: Optional[bool] = None, sample: bool = True, **fields) -> TrainRun:
    """Fine-tunes the pre-trained run `from_run` for `task`, leaving a run directory behind.

    Args:
        from_run: the pre-trained run directory (its weights, tokenizer and architecture).
        task: "classify" (`label<TAB>text` lines), "instruct" (`prompt<TAB>response` lines)
            or "lm" (text, as `llm-tf train --data` takes it: continued pre-training).
        data: the training file.
        run_dir: the new run directory (a run of its own: config, tokenizer, checkpoints,
            metrics.jsonl, TensorBoard, model.weights.h5).
        eval_data: the evaluation file; "" holds out `val_fraction` of `data`.
        method: "full" (default), "frozen" (classify only) or "lora".
        epochs: passes over the training examples (classify, instruct; default 3).
        resume: continue the run in `run_dir` (`from_run`, `task`, `data` may be omitted).
        overwrite: start again in a `run_dir` that holds a run.
        stop_at: pause after this step (checkpointed; continue with `resume=True`).
        strategy, stream, tty: as `llm_tf.training.train`.
        sample: print samples at evaluations (lm, instruct).
        **fields: any field of DataConfig, TrainConfig or FinetuneConfig (and `dropout`),
            e.g. `learning_rate=1e-4`, `lora_rank=4`, `pooling="mean"`, `steps=300`.

    Returns:
        a `TrainRun` (run directory, trained model, tokenizer, the loop's result).
    """
    if resume:
        plan = resumed_plan(run_dir, from_run, task, method, fields, epochs=epochs)
    else:
        if from_run is None or task is None or run_dir is None:
            raise ValueError("finetune needs from_run, task, data and run_dir (or resume=True "
                             "with run_dir).")
        plan = new_plan(from_run, task, data, run_dir, eval_data=eval_data,
                        method=method or "full", overwrite=overwrite, fields=fields,
                        epochs=epochs)
    return run_plan(plan, stop_at=stop_at, strategy=strategy, stream=stream,
                    tty=tty, sample=sample)
