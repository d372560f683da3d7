"""What each fine-tuning task hands `run_job`: its model, data, hooks (`llm_tf.training.run.Job`).

    classify  TransformerClassifier on `label<TAB>text` lines; evaluations add accuracy and
              macro-F1 on the evaluation texts to metrics.jsonl
    instruct  TransformerLM on `prompt<TAB>response` lines, loss on the responses only;
              a sample answers evaluation prompts
    lm        TransformerLM on new text (continued pre-training): `lm_job`'s windows

Every job's `build_model` applies the method (full / frozen / lora), and its `initialize`
copies the pre-trained weights in (new runs only; a resumed run restores its checkpoint,
which holds the adapters too). The weights file each writes is a plain model's: Keras
writes a LoRA-adapted projection's merged kernel W + (α/r)·A·B.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from llm_tf.data import (
    encode_instructions,
    encode_texts,
    load_corpus,
    ordered_batches,
    shuffled_batches,
)
from llm_tf.evaluation import ClassifierScorer
from llm_tf.fine_tuning.methods import apply_method
from llm_tf.fine_tuning.pretrained import Pretrained, initialize_from
from llm_tf.generation import Generator, training_sampler
from llm_tf.models import TransformerClassifier, TransformerLM
from llm_tf.rundir import RunConfig
from llm_tf.tokenizers import IGNORE_LABEL
from llm_tf.training.run import Job, JobData, lm_job

SAMPLE_PROMPTS = 3  # evaluation prompts an instruct run answers at each evaluation


def _initializer(config: RunConfig, pretrained: Optional[Pretrained]):
    """The `initialize` hook: pre-trained weights in, unless the run asked for random ones
    (the baseline that shows what pre-training brings) or resumes (no `pretrained`)."""
    if pretrained is None or not config.finetune.pretrained_weights:
        return None
    return lambda model: initialize_from(pretrained, model)


def classify_job(config: RunConfig, tokenizer, pretrained: Optional[Pretrained], train_set,
                 eval_set, eval_name: str = "evaluation") -> Job:
    """A classifier's job on `LabelledTexts`; `eval_name` says what `eval_set` is."""
    data, finetune = config.data, config.finetune
    T, B = data.context_length, data.batch_size
    train_ids, train_cut = encode_texts(tokenizer, train_set.texts, T)
    eval_ids, eval_cut = encode_texts(tokenizer, eval_set.texts, T)

    def build_model(dtype):
        model = TransformerClassifier(config.model, len(finetune.labels), finetune.pooling,
                                      pad_id=tokenizer.pad_id, dtype=dtype)
        model.build((None, T))
        apply_method(model, finetune)
        return model

    def build_data(start_step):
        train = shuffled_batches((train_ids, train_set.labels), B, data.seed, start_step)
        val = ordered_batches((eval_ids, eval_set.labels), B, (tokenizer.pad_id, IGNORE_LABEL))
        return JobData(train, val, tokens_per_step=B * T, description=(
            f"{len(train_set):,} training texts ({train_set.describe()}), "
            f"{len(eval_set):,} {eval_name} texts "
            f"({eval_set.describe()}), {train_cut + eval_cut:,} cut to their first {T} "
            f"tokens, batch {B}x{T}"))

    scorers = {}

    def evaluate(model):
        if model not in scorers:  # one compiled pass, reused at every evaluation
            scorers[model] = ClassifierScorer(model, eval_ids, eval_set.labels, B)
        return scorers[model]()

    return Job(config=config, tokenizer=tokenizer, build_model=build_model,
               build_data=build_data, initialize=_initializer(config, pretrained),
               evaluate=evaluate)


def instruct_job(config: RunConfig, tokenizer, pretrained: Optional[Pretrained], train_pairs,
                 eval_pairs, eval_name: str = "evaluation", sample: bool = True) -> Job:
    """Instruction tuning on `InstructionPairs`; `eval_name` says what `eval_pairs` are."""
    data, finetune = config.data, config.finetune
    T, B = data.context_length, data.batch_size
    train = encode_instructions(tokenizer, train_pairs, finetune.format_prompt, T)
    val = encode_instructions(tokenizer, eval_pairs, finetune.format_prompt, T)

    def build_model(dtype):
        model = TransformerLM(config.model, dtype=dtype)
        model.build((None, T))
        apply_method(model, finetune)
        return model

    def build_data(start_step):
        cut = train.prompts_cut + val.prompts_cut
        cut_responses = train.responses_cut + val.responses_cut
        return JobData(
            shuffled_batches((train.x, train.y), B, data.seed, start_step),
            ordered_batches((val.x, val.y), B, (tokenizer.pad_id, IGNORE_LABEL)),
            tokens_per_step=B * T, description=(
                f"{len(train_pairs):,} training pairs ({train.response_tokens:,} response "
                f"tokens), {len(eval_pairs):,} {eval_name} pairs; {cut:,} prompts and "
                f"{cut_responses:,} responses cut to fit {T} tokens, batch {B}x{T}"))

    prompts = [finetune.format_prompt(p) for p in eval_pairs.prompts[:SAMPLE_PROMPTS]]
    sampler = (instruct_sampler(prompts, config.train.sample_length)
               if sample and config.train.sample_length else None)
    return Job(config=config, tokenizer=tokenizer, build_model=build_model,
               build_data=build_data, initialize=_initializer(config, pretrained),
               sampler=sampler)


def language_model_job(config: RunConfig, tokenizer, pretrained: Optional[Pretrained],
                       sample: bool = True) -> Job:
    """Continued pre-training on `config.data.source` (`lm_job`, from pre-trained weights)."""
    sampler = (training_sampler(config.train.sample_length, config.train.seed)
               if sample and config.train.sample_length else None)
    job = lm_job(config.model, config.data, config.train, tokenizer,
                 load_corpus(config.data.source), sampler=sampler)
    build_language_model = job.build_model

    def build_model(dtype):
        model = build_language_model(dtype)
        apply_method(model, config.finetune)
        return model

    job.config = config
    job.build_model = build_model
    job.initialize = _initializer(config, pretrained)
    return job


def instruct_sampler(prompts, max_new_tokens: int):
    """`(model, tokenizer) -> sample(step)`: greedy answers to `prompts` (already inside the
    template), one line each, printed after every evaluation."""

    def make(model, tokenizer):
        generator = Generator(model, tokenizer, compile="graph")
        # Room for the whole longest prompt: a prompt cut to fit the new tokens loses the
        # question, and an answer ends at EOS well before `max_new_tokens` anyway.
        longest = max((len(row) for row in
                       tokenizer.encode(tf.constant(list(prompts))).to_list()), default=0)
        new_tokens = max(1, min(max_new_tokens, model.config.max_length - longest))

        def sample(step: int) -> str:
            answers = generator.generate(list(prompts), new_tokens)
            return "\n".join(f"  {p!r} -> {a!r}" for p, a in zip(prompts, answers))

        return sample

    return make
