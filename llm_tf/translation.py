"""The "translation" task: the encoder–decoder `Transformer` trained on sentence pairs.

    llm-tf train --task translation --data pairs.tsv [--eval-data test.tsv]
    llm_tf.translation.train_translation(model_config, data_config, train_config, run_dir)

What this module brings to the shared machine (`llm_tf.training.run.run_job`) as a `Job`:

* **the data**: `source<TAB>target` lines (`llm_tf.data.pairs`), a seeded `val_fraction` of
  them held out unless `data_config.eval_source` names validation pairs, and length-bucketed
  batches that resume exactly (`llm_tf.data.buckets`);
* **one tokenizer for both languages**, learned from both sides of the training pairs (the
  paper's shared BPE vocabulary for En–De, §5.1): one `vocab_size`, names and numbers spelled
  alike on both sides get the same ids, and the source embedding, the target embedding and the
  output projection can be one matrix (`tie_embeddings`, §3.4). Two vocabularies would double
  the embedding parameters for no gain between two languages written in the same script;
* **the model**: `Transformer.from_model_config(model_config)`;
* **the loss**: cross-entropy over the target tokens (padding carries `IGNORE_LABEL`), with
  `train_config.label_smoothing` (the paper's 0.1 in the `translation` preset).

Everything else — the loop, checkpoints and exact resume, distribution, mixed precision,
reporting — is the language model's. Like training, this module knows nothing of decoding:
the command injects what is printed (`sampler`) and measured (`evaluator`, BLEU) at each
evaluation.
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from llm_tf.config import DataConfig, ModelConfig, TrainConfig
from llm_tf.data.buckets import build_pair_batches
from llm_tf.data.pairs import SentencePairs, load_pairs, split_pairs
from llm_tf.models import Transformer
from llm_tf.rundir import RunConfig
from llm_tf.tokenizers import load_tokenizer, train_tokenizer
from llm_tf.training.distribute import get_strategy
from llm_tf.training.run import Job, JobData, SamplerFactory, TrainRun, open_run_dir, run_job

TASK = "translation"
# Fewest training pairs: one to learn from, one held out (or give validation pairs).
MIN_TRAINING_PAIRS = 2


def check_fit(model_config: ModelConfig, data_config: DataConfig) -> None:
    """Batches of `context_length` tokens must fit the model's positions (a `ValueError`)."""
    if data_config.context_length > model_config.max_length:
        raise ValueError(
            f"`context_length`={data_config.context_length} is longer than the model's "
            f"`max_length`={model_config.max_length}: raise --max_length too.")


def learn_shared_tokenizer(data_config: DataConfig, pairs: SentencePairs):
    """One tokenizer of kind `data_config.tokenizer`, learned from both sides of `pairs`."""
    subword = data_config.tokenizer in ("wordpiece", "sentencepiece")
    return train_tokenizer(data_config.tokenizer, list(pairs.texts()),
                           vocab_size=data_config.vocab_size if subword else None)


def read_training_pairs(data_config: DataConfig) -> tuple[SentencePairs, SentencePairs]:
    """(training pairs, validation pairs): `eval_source` if set, else a held-out share."""
    pairs = load_pairs(data_config.source, MIN_TRAINING_PAIRS, "training pairs")
    if data_config.eval_source:
        return pairs, load_pairs(data_config.eval_source, 1, "validation pairs")
    return split_pairs(pairs, data_config.val_fraction, data_config.seed)


def translation_job(model_config: ModelConfig, data_config: DataConfig,
                    train_config: TrainConfig, tokenizer, train_pairs: SentencePairs,
                    val_pairs: Optional[SentencePairs],
                    sampler: Optional[SamplerFactory] = None,
                    evaluate: Optional[Callable] = None) -> Job:
    """The `Job` of a translator trained on `train_pairs`, validated on `val_pairs`.

    Args:
        sampler: `(model, tokenizer) -> (step -> text)`, printed at each evaluation.
        evaluate: `model -> {metric: value}` (e.g. BLEU), recorded at each evaluation.
    """
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    T = data_config.context_length

    def build_model(dtype):
        model = Transformer.from_model_config(model_config, dtype=dtype)
        model.build(((None, T), (None, T)))
        return model

    def build_data(start_step):
        data = build_pair_batches(tokenizer, train_pairs, val_pairs, T,
                                  data_config.batch_size, data_config.seed, start_step)
        shapes = ", ".join(f"{b}x{L}" for b, L in zip(data.batch_sizes, data.bucket_lengths))
        left_out = f" ({data.num_too_long:,} longer than {T} tokens left out)" \
            if data.num_too_long else ""
        return JobData(data.train, data.val, tokens_per_step=data_config.batch_size * T,
                       description=f"{data.num_train:,} training pairs{left_out} / "
                                   f"{data.num_val:,} validation pairs, batches {shapes}")

    return Job(config=RunConfig(model_config, data_config, train_config, task=TASK),
               tokenizer=tokenizer, build_model=build_model, build_data=build_data,
               evaluate=evaluate, label_smoothing=train_config.label_smoothing,
               sampler=sampler)


def train_translation(model_config: ModelConfig, data_config: DataConfig,
                      train_config: TrainConfig, run_dir, *, resume: bool = False,
                      overwrite: bool = False,
                      strategy: Optional[tf.distribute.Strategy] = None, stream=None,
                      tty: Optional[bool] = None,
                      sampler: Optional[Callable[[SentencePairs], SamplerFactory]] = None,
                      evaluator: Optional[Callable[[object, SentencePairs], Callable]] = None,
                      stop_at: Optional[int] = None) -> TrainRun:
    """Trains a translator on `data_config.source` and leaves a complete run directory behind.

    Arguments as in `llm_tf.training.train`, but `sampler` and `evaluator` are given the
    validation pairs first: `sampler(val_pairs)` is a `SamplerFactory`,
    `evaluator(tokenizer, val_pairs)` a `model -> {metric: value}` function
    (`llm_tf.evaluation.validation_bleu` is one).
    """
    strategy = strategy or get_strategy()
    check_fit(model_config, data_config)
    train_pairs, val_pairs = read_training_pairs(data_config)
    run_dir = open_run_dir(run_dir, strategy, model_config, resume, overwrite)
    tokenizer = (load_tokenizer(run_dir.tokenizer_dir) if resume
                 else learn_shared_tokenizer(data_config, train_pairs))
    job = translation_job(model_config, data_config, train_config, tokenizer, train_pairs,
                          val_pairs, sampler=sampler(val_pairs) if sampler else None,
                          evaluate=evaluator(tokenizer, val_pairs) if evaluator else None)
    return run_job(job, run_dir, resume=resume, strategy=strategy, stream=stream, tty=tty,
                   stop_at=stop_at)
