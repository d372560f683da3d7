"""`train(...)`: everything one training run needs, wired together in order.

    strategy -> run directory (new, or resumed) -> tokenizer (learned, or the run's)
      -> config.json + tokenizer/ written -> seeds -> model, optimizer, step in strategy.scope()
      -> restore the latest checkpoint (resume) -> datasets from that step
      -> the loop (loop.py) -> model.weights.h5

`llm-tf train` (llm_tf/commands/train.py) is a command-line front end to this
function; it also injects the sampler that prints text at each evaluation and
exports the finished run, so that training itself knows nothing of generation
or export.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import keras
import tensorflow as tf

from llm_tf import weights
from llm_tf.config import DataConfig, ModelConfig, TrainConfig, differences, format_differences
from llm_tf.data import build_lm_data, load_corpus
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


@dataclasses.dataclass
class TrainRun:
    """What `train` returns: the run directory, the trained model and tokenizer, the result."""

    run_dir: RunDir
    model: keras.Model
    tokenizer: object
    model_config: ModelConfig
    result: LoopResult


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


def train(model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig,
          run_dir, *, resume: bool = False, overwrite: bool = False,
          strategy: Optional[tf.distribute.Strategy] = None, corpus=None, stream=None,
          tty: Optional[bool] = None, sampler: Optional[SamplerFactory] = None,
          stop_at: Optional[int] = None) -> TrainRun:
    """Pre-trains a `TransformerLM` and leaves a complete run directory behind.

    Args:
        model_config, data_config, train_config: what to train, on what, how.
            `model_config.vocab_size` is replaced by the tokenizer's.
        run_dir: a path, checked here (`RunDir.create`, or `RunDir.resume`), or a
            `RunDir` its caller made with those checks.
        resume: continue the run in `run_dir` from its latest checkpoint.
        overwrite: start again in a `run_dir` that holds a run.
        strategy: a `tf.distribute.Strategy`; default `get_strategy()`.
        corpus: an `llm_tf.data.Corpus` to use instead of `data_config.source`.
        stream: where progress is printed (default stdout).
        tty: force the progress bar on or off.
        sampler: `sampler(model, tokenizer)` -> `sample(step)` -> text printed after
            each evaluation (`llm_tf.generation.training_sampler` is nanoGPT's);
            None prints none.
        stop_at: pause after this step (checkpointed; continue with `resume=True`).

    Returns:
        a `TrainRun`.
    """
    strategy = strategy or get_strategy()
    chief = is_chief(strategy)
    check_fit(model_config, data_config)
    if not isinstance(run_dir, RunDir):  # every worker runs this; only the chief checks
        run_dir = (RunDir(run_dir) if not chief else
                   RunDir.resume(run_dir, model_config) if resume else
                   RunDir.create(run_dir, overwrite))

    # The tokenizer: the run's own when resuming, else learned from the corpus.
    corpus = corpus or load_corpus(data_config.source)
    changes = []
    if resume:
        tokenizer = load_tokenizer(run_dir.tokenizer_dir)
        model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        saved = run_dir.read_config()
        found = [differences(old, new) for old, new in
                 ((saved.data, data_config), (saved.train, train_config)) if old is not None]
        changes = [format_differences(f, "saved", "asked for") for f in found if f]
        if chief and changes:  # config.json describes the run as it continues
            run_dir.write_config(RunConfig(model_config, data_config, train_config))
    else:
        tokenizer = learn_tokenizer(data_config, corpus)
        model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        if chief:  # what a run needs to be reproduced, written before the first step
            run_dir.write_config(RunConfig(model_config, data_config, train_config))
            tokenizer.save(run_dir.tokenizer_dir)

    keras.utils.set_random_seed(train_config.seed)
    precision = train_config.precision
    with strategy.scope():
        model = TransformerLM(model_config, dtype=None if precision == "float32" else precision)
        model.build((None, data_config.context_length))
        optimizer = make_optimizer(train_config, model.trainable_variables, model_config.d_model,
                                   mixed_float16=precision == "mixed_float16")
        train_step = TrainStep(model, optimizer, strategy, clip_norm=train_config.clip_norm,
                               jit_compile=train_config.jit_compile)
        checkpoints = Checkpoints(run_dir.checkpoint_dir, model, optimizer,
                                  train_step.step, keep=train_config.keep_checkpoints,
                                  chief=chief)
    start_step = checkpoints.restore() if resume else 0
    if resume and chief:
        drop_metrics_after(run_dir.metrics_file, start_step)

    data = build_lm_data(data_config, tokenizer, corpus=corpus, start_step=start_step)
    batches = iter(strategy.experimental_distribute_dataset(data.train))
    # `eval_batches` > 0 trades exactness for speed on big validation splits.
    val_data = data.val.take(train_config.eval_batches) if train_config.eval_batches else data.val
    val = strategy.experimental_distribute_dataset(val_data)
    evaluate_step = EvalStep(model, strategy)

    reporter = Reporter(run_dir, train_config.steps, chief=chief, stream=stream, tty=tty)
    reporter.print(
        f"{'resuming at step ' + str(start_step) if resume else 'training'} in {run_dir}: "
        f"{model.count_params() / 1e6:.2f}M parameters (vocab {tokenizer.vocab_size}), "
        f"{data.num_train_tokens:,} training / {data.num_val_tokens:,} validation tokens, "
        f"batch {data_config.batch_size}x{data_config.context_length}, "
        f"{strategy.num_replicas_in_sync} replica(s) ({strategy_name(strategy)}), "
        f"{precision}{', XLA' if train_config.jit_compile else ''}")
    if changes:
        reporter.print("changed since the run started: " + "; ".join(changes))
    sample = sampler(model, tokenizer) if sampler and chief and train_config.sample_length \
        else None
    try:
        result = run_loop(train_step, batches, train_config,
                          tokens_per_step=data_config.batch_size * data_config.context_length,
                          evaluate=lambda: evaluate_step(val), checkpoints=checkpoints,
                          reporter=reporter, sample=sample, stop_at=stop_at)
        # Every worker saves (the variables are gathered collectively); the chief's is kept.
        with worker_directory(run_dir.path, chief) as directory:
            weights.save(model, Path(directory) / RunDir.WEIGHTS_FILE)
    finally:
        reporter.close()
        checkpoints.close()
    if result.steps_run == 0 and chief:  # already complete: report its last evaluation
        last = next(iter(read_metrics(run_dir.metrics_file)[-1:]), {})
        result.train_loss, result.val_loss = last.get("train_loss"), last.get("val_loss")
    return TrainRun(run_dir=run_dir, model=model, tokenizer=tokenizer, model_config=model_config,
                    result=result)
