"""Training runs: one shared machine (`run_job`) and the language model's use of it (`train`).

Every task — pre-training a language model here, and the tasks built on the same
loop (fine-tuning, translation) — hands `run_job` a `Job`: the configs to record,
the tokenizer, how to build the model and the data, and optional hooks. The rest
is the same for all of them, in this order:

    run directory (new, or resumed) -> config.json + tokenizer/ written -> seeds
      -> model (+ pre-trained weights, new runs only), optimizer, step in strategy.scope()
      -> restore the latest checkpoint (resume) -> datasets from that step
      -> the loop (loop.py) -> model.weights.h5

`llm-tf train` (llm_tf/commands/train.py) is a command-line front end to `train`;
it also injects the sampler that prints text at each evaluation and exports the
finished run, so that training itself knows nothing of generation or export.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import keras
import tensorflow as tf

from llm_tf import weights
from llm_tf.config import DataConfig, ModelConfig, TrainConfig, differences, format_differences
from llm_tf.data import DataError, build_lm_data
from llm_tf.data.prepared import PreparedCorpus, open_data
from llm_tf.models import TransformerLM
from llm_tf.rundir import RunConfig, RunDir
from llm_tf.tokenizers import load_tokenizer, train_tokenizer
from llm_tf.training.checkpoints import Checkpoints
from llm_tf.training.distribute import get_strategy, is_chief, strategy_name, worker_directory
from llm_tf.training.loop import LoopResult, run_loop
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.reporting import Reporter, drop_metrics_after, read_metrics
from llm_tf.training.step import EvalStep, TrainStep

# (model, tokenizer) -> (step -> text printed after that step's evaluation)
SamplerFactory = Callable[[keras.Model, object], Callable[[int], str]]


@dataclasses.dataclass(frozen=True)
class JobData:
    """A task's batches, from the step the run (re)starts at.

    Attributes:
        train: a dataset of global batches `(x, y)`, positioned at the start step
            (x: whatever the model takes; y: labels, `IGNORE_LABEL` where none) — or a
            function `tf.distribute.InputContext -> dataset` of per-replica batches, for
            data each worker reads a share of (`distribute_datasets_from_function`).
        val: validation batches of the same form, or None.
        tokens_per_step: labelled-or-not positions in one global batch (for tokens/s).
        description: what the header line says of the data ("N training tokens, ...").
    """

    train: tf.data.Dataset | Callable[[tf.distribute.InputContext], tf.data.Dataset]
    val: Optional[tf.data.Dataset]
    tokens_per_step: int
    description: str


@dataclasses.dataclass
class Job:
    """What one task brings to `run_job`.

    Attributes:
        config: written to config.json (the model config's `vocab_size` already the
            tokenizer's).
        tokenizer: saved into the run directory of a new run (a resumed run's own).
        build_model: `dtype policy name or None -> model`, built, called inside
            `strategy.scope()` after the seeds are set.
        build_data: `start_step -> JobData`.
        initialize: `model -> None`, run once before the first step of a *new* run
            (e.g. copy pre-trained weights in); a resumed run restores its checkpoint.
        evaluate: `model -> {name: number}`, task metrics recorded with the validation
            loss at each evaluation (e.g. accuracy); None for none.
        save_weights: `(model, path) -> None` writes the final weights file
            (e.g. merging adapters first); default `llm_tf.weights.save`.
        label_smoothing: ε of the training loss.
        sampler: `sampler(model, tokenizer) -> sample(step)`, text printed after each
            evaluation; None prints none.
    """

    config: RunConfig
    tokenizer: object
    build_model: Callable[[Optional[str]], keras.Model]
    build_data: Callable[[int], JobData]
    initialize: Optional[Callable[[keras.Model], None]] = None
    evaluate: Optional[Callable[[keras.Model], dict]] = None
    save_weights: Optional[Callable[[keras.Model, str], None]] = None
    label_smoothing: float = 0.0
    sampler: Optional[SamplerFactory] = None


@dataclasses.dataclass
class TrainRun:
    """What a run returns: the run directory, the trained model and tokenizer, the result."""

    run_dir: RunDir
    model: keras.Model
    tokenizer: object
    model_config: ModelConfig
    result: LoopResult


def open_run_dir(run_dir, strategy, model: ModelConfig, resume: bool,
                 overwrite: bool) -> RunDir:
    """`run_dir` checked for the run's intent (`RunDir.create` or `RunDir.resume`), on the chief
    only; a `RunDir` made by the caller is taken as checked."""
    if isinstance(run_dir, RunDir):
        return run_dir
    if not is_chief(strategy):  # every worker runs this; only the chief checks and writes
        return RunDir(run_dir)
    return RunDir.resume(run_dir, model) if resume else RunDir.create(run_dir, overwrite)


def run_job(job: Job, run_dir: RunDir, *, resume: bool = False,
            strategy: Optional[tf.distribute.Strategy] = None, stream=None,
            tty: Optional[bool] = None, stop_at: Optional[int] = None) -> TrainRun:
    """Trains `job` in `run_dir` (a checked `RunDir`, see `open_run_dir`) and leaves a complete
    run directory behind (see the module docstring). Arguments as in `train`."""
    strategy = strategy or get_strategy()
    chief = is_chief(strategy)
    config, train_config = job.config, job.config.train
    changes = []
    if resume:
        saved = run_dir.read_config()
        found = [differences(old, new) for old, new in
                 ((saved.data, config.data), (saved.train, config.train)) if old is not None]
        changes = [format_differences(f, "saved", "asked for") for f in found if f]
        if chief and changes:  # config.json describes the run as it continues
            run_dir.write_config(config)
    elif chief:  # what a run needs to be reproduced, written before the first step
        run_dir.write_config(config)
        job.tokenizer.save(run_dir.tokenizer_dir)

    keras.utils.set_random_seed(train_config.seed)
    precision = train_config.precision
    with strategy.scope():
        model = job.build_model(None if precision == "float32" else precision)
        if job.initialize is not None and not resume:
            job.initialize(model)
        optimizer = make_optimizer(train_config, model.trainable_variables, config.model.d_model,
                                   mixed_float16=precision == "mixed_float16")
        train_step = TrainStep(model, optimizer, strategy, clip_norm=train_config.clip_norm,
                               jit_compile=train_config.jit_compile,
                               label_smoothing=job.label_smoothing,
                               accumulate=train_config.accumulate,
                               recompute=train_config.recompute)
        checkpoints = Checkpoints(run_dir.checkpoint_dir, model, optimizer,
                                  train_step.step, keep=train_config.keep_checkpoints,
                                  chief=chief)
    start_step = checkpoints.restore() if resume else 0
    if resume and chief:
        drop_metrics_after(run_dir.metrics_file, start_step)

    data = job.build_data(start_step)
    batches = iter(strategy.distribute_datasets_from_function(data.train) if callable(data.train)
                   else strategy.experimental_distribute_dataset(data.train))
    evaluate = None
    if data.val is not None:
        # `eval_batches` > 0 trades exactness for speed on big validation splits.
        val_data = data.val.take(train_config.eval_batches) if train_config.eval_batches \
            else data.val
        val = strategy.experimental_distribute_dataset(val_data)
        evaluate_step = EvalStep(model, strategy)

        def evaluate():
            loss, perplexity = evaluate_step(val)
            metrics = {"val_loss": loss, "val_perplexity": perplexity}
            if job.evaluate is not None:
                metrics.update(job.evaluate(model))
            return metrics

    reporter = Reporter(run_dir, train_config.steps, chief=chief, stream=stream, tty=tty)
    trainable = sum(int(tf.size(v)) for v in model.trainable_variables)
    total = model.count_params()
    parameters = f"{total / 1e6:.2f}M parameters" + (
        "" if trainable == total else f" ({trainable:,} trainable)")
    reporter.print(
        f"{'resuming at step ' + str(start_step) if resume else 'training'} in {run_dir}: "
        f"{parameters} (vocab {job.tokenizer.vocab_size}), {data.description}, "
        f"{strategy.num_replicas_in_sync} replica(s) ({strategy_name(strategy)}), "
        f"{precision}{', XLA' if train_config.jit_compile else ''}")
    if changes:
        reporter.print("changed since the run started: " + "; ".join(changes))
    sample = job.sampler(model, job.tokenizer) \
        if job.sampler and chief and train_config.sample_length else None
    save_weights = job.save_weights or weights.save
    try:
        result = run_loop(train_step, batches, train_config,
                          tokens_per_step=data.tokens_per_step, evaluate=evaluate,
                          checkpoints=checkpoints, reporter=reporter, sample=sample,
                          stop_at=stop_at)
        # Every worker saves (the variables are gathered collectively); the chief's is kept.
        with worker_directory(run_dir.path, chief) as directory:
            save_weights(model, str(Path(directory) / RunDir.WEIGHTS_FILE))
    finally:
        reporter.close()
        checkpoints.close()
    if result.steps_run == 0 and chief:  # already complete: report its last evaluation
        last = next(iter(read_metrics(run_dir.metrics_file)[-1:]), {})
        result.train_loss, result.val_loss = last.get("train_loss"), last.get("val_loss")
        result.metrics = {k: v for k, v in last.items() if k.startswith("val_") or k not in
                          ("step", "train_loss", "lr", "tokens_per_sec", "elapsed_sec")}
    return TrainRun(run_dir=run_dir, model=model, tokenizer=job.tokenizer,
                    model_config=config.model, result=result)


# -- pre-training a language model ----------------------------------------------------------


def check_fit(model_config: ModelConfig, data_config: DataConfig) -> None:
    """The windows must fit the model's context (a `ValueError` otherwise)."""
    if data_config.context_length > model_config.max_length:
        raise ValueError(
            f"`context_length`={data_config.context_length} is longer than the model's "
            f"`max_length`={model_config.max_length}: raise --max_length too.")


def learn_tokenizer(data: DataConfig, corpus):
    """The tokenizer `data.tokenizer` names, learned from `corpus` (char/byte: no size cap)."""
    vocab_size = data.vocab_size if data.tokenizer in ("wordpiece", "sentencepiece") else None
    return train_tokenizer(data.tokenizer, corpus, vocab_size=vocab_size)


def lm_job(model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig,
           tokenizer, corpus, sampler: Optional[SamplerFactory] = None,
           task: str = "lm") -> Job:
    """The `Job` of a decoder-only language model on `corpus` (text, or a `PreparedCorpus`):
    windows of `context_length` tokens, validation on the held-out tail (or
    `data_config.eval_source`)."""
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    B, T = data_config.batch_size, data_config.context_length
    accumulate = train_config.accumulate

    def build_model(dtype):
        model = TransformerLM(model_config, dtype=dtype)
        model.build((None, T))
        return model

    def build_data(start_step):
        start_step *= accumulate  # batches read before this step: `accumulate` per update
        if isinstance(corpus, PreparedCorpus):
            data = corpus.lm_data(data_config, start_step=start_step, pad_id=tokenizer.pad_id)
            return JobData(
                lambda context: corpus.train_batches(data_config, start_step=start_step,
                                                     input_context=context),
                data.val, tokens_per_step=B * T * accumulate, description=(
                    f"{data.num_train_tokens:,} training / {data.num_val_tokens:,} validation "
                    f"tokens in {len(corpus.manifest.train)} + {len(corpus.manifest.val)} "
                    f"shards, batch {B}x{T}" + (f" x {accumulate} micro-batches"
                                                if accumulate > 1 else "")))
        data = build_lm_data(data_config, tokenizer, corpus=corpus, start_step=start_step)
        return JobData(data.train, data.val, tokens_per_step=B * T * accumulate, description=(
            f"{data.num_train_tokens:,} training / {data.num_val_tokens:,} validation tokens, "
            f"batch {B}x{T}" + (f" x {accumulate} micro-batches" if accumulate > 1 else "")))

    return Job(config=RunConfig(model_config, data_config, train_config, task=task),
               tokenizer=tokenizer, build_model=build_model, build_data=build_data,
               label_smoothing=train_config.label_smoothing, sampler=sampler)


def train(model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig,
          run_dir, *, resume: bool = False, overwrite: bool = False,
          strategy: Optional[tf.distribute.Strategy] = None, corpus=None, stream=None,
          tty: Optional[bool] = None, sampler: Optional[SamplerFactory] = None,
          stop_at: Optional[int] = None, tokenizer=None) -> TrainRun:
    """Pre-trains a `TransformerLM` and leaves a complete run directory behind.

    Args:
        model_config, data_config, train_config: what to train, on what, how.
            `model_config.vocab_size` is replaced by the tokenizer's.
        run_dir: a path, checked here (`RunDir.create`, or `RunDir.resume`), or a
            `RunDir` its caller made with those checks.
        resume: continue the run in `run_dir` from its latest checkpoint.
        overwrite: start again in a `run_dir` that holds a run.
        strategy: a `tf.distribute.Strategy`; default `get_strategy()`.
        corpus: an `llm_tf.data.Corpus` (or `PreparedCorpus`) to use instead of
            `data_config.source`, which may name a prepared directory (`llm-tf prepare`).
        stream: where progress is printed (default stdout).
        tty: force the progress bar on or off.
        sampler: `sampler(model, tokenizer)` -> `sample(step)` -> text printed after
            each evaluation (`llm_tf.generation.training_sampler` is nanoGPT's);
            None prints none.
        stop_at: pause after this step (checkpointed; continue with `resume=True`).
        tokenizer: use this tokenizer instead of learning one (a new run); with prepared
            data it must be the one the directory was made with.

    Returns:
        a `TrainRun`.
    """
    strategy = strategy or get_strategy()
    check_fit(model_config, data_config)
    run_dir = open_run_dir(run_dir, strategy, model_config, resume, overwrite)
    corpus = corpus or open_data(data_config.source)
    # The tokenizer: the run's own when resuming, else the one given, else the prepared
    # directory's, else learned from the corpus.
    given = "the run's tokenizer" if resume else "the tokenizer given (--tokenizer-from)"
    if resume:
        tokenizer = load_tokenizer(run_dir.tokenizer_dir)
    if isinstance(corpus, PreparedCorpus):
        if data_config.eval_source:
            raise DataError(f"A prepared directory ({corpus.path!r}) brings its validation "
                            "shards: `eval_source` would be ignored; prepare the evaluation "
                            "text into the directory's split instead, or train on text.")
        if tokenizer is None:
            tokenizer = corpus.load_tokenizer()
        else:
            corpus.check_tokenizer(tokenizer, given)
        # The split and the tokenizer were made by `llm-tf prepare`: record them as they are.
        data_config = data_config.replace(tokenizer=tokenizer.kind,
                                          val_fraction=corpus.manifest.val_fraction)
    elif tokenizer is None:
        tokenizer = learn_tokenizer(data_config, corpus)
    job = lm_job(model_config, data_config, train_config, tokenizer, corpus, sampler)
    return run_job(job, run_dir, resume=resume, strategy=strategy, stream=stream, tty=tty,
                   stop_at=stop_at)
