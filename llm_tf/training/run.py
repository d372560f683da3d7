"""`train(...)`: everything one training run needs, wired together in order.

    strategy -> run directory checks -> seeds -> tokenizer (learned, or the run's)
      -> config.json + tokenizer/ written -> model, optimizer, step in strategy.scope()
      -> restore the latest checkpoint (resume) -> datasets from that step
      -> the loop (loop.py) -> model.weights.h5 -> [export]

`llm-tf train` is a command-line front end to this function.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import keras
import tensorflow as tf

from llm_tf import saving
from llm_tf.config import DataConfig, ModelConfig, TrainConfig
from llm_tf.training import rundir
from llm_tf.training.checkpoints import Checkpoints
from llm_tf.training.distribute import (get_strategy, is_chief, strategy_name,
                                        worker_directory)
from llm_tf.training.loop import LoopResult, run_loop
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.reporting import Reporter, drop_metrics_after, read_metrics
from llm_tf.training.step import EvalStep, TrainStep

SAMPLE_TEMPERATURE = 0.8  # nanoGPT's sample.py
SAMPLE_TOP_K = 200


@dataclasses.dataclass
class TrainRun:
    """What `train` returns: the run directory, the trained model and tokenizer, the result."""

    run_dir: str
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
    from llm_tf.tokenizers import train_tokenizer
    vocab_size = data.vocab_size if data.tokenizer in ("wordpiece", "sentencepiece") else None
    return train_tokenizer(data.tokenizer, corpus, vocab_size=vocab_size)


def make_sampler(model, tokenizer, length: int, seed: int):
    """step -> a sample of `length` tokens after a newline, seeded by (seed, step).

    Uses `llm_tf.generation.Generator` (KV cache, stateless seeds: sampling
    never touches the training's random state). A sample longer than the
    context is made in rounds, each continuing from the last half-context,
    as nanoGPT crops its context to `block_size`.
    """
    if length == 0:
        return None
    from llm_tf.generation import Generator
    generator = Generator(model, tokenizer, compile="graph")
    max_length = model.config.max_length
    window = max(1, max_length // 2)
    newline = [int(i) for i in tokenizer.encode(tf.constant("\n")).numpy()]
    prompt = newline if newline and tokenizer.unk_id not in newline else []  # [] -> BOS

    def sample(step):
        new, round_ = [], 0
        while len(new) < length:
            context = (prompt + new)[-window:] if new else prompt
            n = min(length - len(new), max_length - max(len(context), 1))
            ids = generator.generate_ids([context], n, temperature=SAMPLE_TEMPERATURE,
                                         top_k=min(SAMPLE_TOP_K, tokenizer.vocab_size),
                                         seed=seed * 7919 + step * 101 + round_)[0]
            new += [int(i) for i in ids]
            round_ += 1
            if len(ids) < n or (ids and ids[-1] == tokenizer.eos_id):
                break
        text = tokenizer.decode(tf.constant(new, tf.int32)).numpy().decode("utf-8", "replace")
        return f"----- sample at step {step} -----\n{text}\n-----"
    return sample


def train(model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig,
          run_dir, *, resume: bool = False, overwrite: bool = False,
          strategy: Optional[tf.distribute.Strategy] = None, corpus=None, stream=None,
          tty: Optional[bool] = None, sample: bool = True,
          stop_at: Optional[int] = None) -> TrainRun:
    """Pre-trains a `TransformerLM` and leaves a complete run directory behind.

    Args:
        model_config, data_config, train_config: what to train, on what, how.
            `model_config.vocab_size` is replaced by the tokenizer's.
        run_dir: the run directory (see `llm_tf.saving`).
        resume: continue the run in `run_dir` from its latest checkpoint.
        overwrite: start again in a `run_dir` that holds a run.
        strategy: a `tf.distribute.Strategy`; default `get_strategy()`.
        corpus: an `llm_tf.data.Corpus` to use instead of `data_config.source`.
        stream: where progress is printed (default stdout).
        tty: force the progress bar on or off.
        sample: print a sample at each evaluation.
        stop_at: pause after this step (checkpointed; continue with `resume=True`).

    Returns:
        a `TrainRun`.
    """
    from llm_tf.data import build_lm_data, load_corpus
    from llm_tf.models import TransformerLM
    from llm_tf.tokenizers import load_tokenizer

    strategy = strategy or get_strategy()
    chief = is_chief(strategy)
    run_dir = os.fspath(run_dir)
    check_fit(model_config, data_config)

    # The tokenizer: the run's own when resuming, else learned from the corpus.
    corpus = corpus or load_corpus(data_config.source)
    changes = []
    if resume:
        tokenizer = load_tokenizer(Path(run_dir) / saving.TOKENIZER_DIR)
        model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        saved = rundir.prepare_resume(run_dir, model_config)
        changes = [f"{name}: {change}" for old, new in ((saved.data, data_config),
                                                        (saved.train, train_config))
                   if old is not None for name, change in rundir.differences(old, new)]
        if chief and changes:  # config.json describes the run as it continues
            saving.write_config(run_dir, model_config, data_config, train_config)
    else:
        if chief:
            rundir.prepare_new(run_dir, overwrite)
        tokenizer = learn_tokenizer(data_config, corpus)
        model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        if chief:  # what a run needs to be reproduced, written before the first step
            saving.write_config(run_dir, model_config, data_config, train_config)
            tokenizer.save(Path(run_dir) / saving.TOKENIZER_DIR)

    keras.utils.set_random_seed(train_config.seed)
    precision = train_config.precision
    with strategy.scope():
        model = TransformerLM(model_config, dtype=None if precision == "float32" else precision)
        model.build((None, data_config.context_length))
        optimizer = make_optimizer(train_config, model.trainable_variables, model_config.d_model,
                                   mixed_float16=precision == "mixed_float16")
        train_step = TrainStep(model, optimizer, strategy, clip_norm=train_config.clip_norm,
                               jit_compile=train_config.jit_compile)
        checkpoints = Checkpoints(rundir.checkpoint_dir(run_dir), model, optimizer,
                                  train_step.step, keep=train_config.keep_checkpoints,
                                  chief=chief)
    start_step = checkpoints.restore() if resume else 0
    if resume and chief:
        drop_metrics_after(run_dir, start_step)

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
    sampler = make_sampler(model, tokenizer, train_config.sample_length, train_config.seed) \
        if sample and chief else None
    try:
        result = run_loop(train_step, batches, train_config,
                          tokens_per_step=data_config.batch_size * data_config.context_length,
                          evaluate=lambda: evaluate_step(val), checkpoints=checkpoints,
                          reporter=reporter, sample=sampler, stop_at=stop_at)
        # Every worker saves (the variables are gathered collectively); the chief's is kept.
        with worker_directory(run_dir, chief) as directory:
            saving.save_weights(model, Path(directory) / saving.WEIGHTS_FILE)
    finally:
        reporter.close()
        checkpoints.close()
    if result.steps_run == 0 and chief:  # already complete: report its last evaluation
        last = next(iter(read_metrics(run_dir)[-1:]), {})
        result.train_loss, result.val_loss = last.get("train_loss"), last.get("val_loss")
    return TrainRun(run_dir=run_dir, model=model, tokenizer=tokenizer, model_config=model_config,
                    result=result)
