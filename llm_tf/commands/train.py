"""`llm-tf train` (also `python -m llm_tf.train`): presets, overrides, resume, then export.

    llm-tf train                                  # tiny preset, built-in corpus, a few minutes
    llm-tf train --preset tiny --data tinyshakespeare.txt --tokenizer char
    llm-tf train --preset small --num_layers=8 --learning_rate=3e-4 --run-dir runs/big
    llm-tf train --run-dir runs/big --resume      # continue from the latest checkpoint
    llm-tf train --task translation --data pairs.tsv [--eval-data test.tsv]   # a translator

Any field of ModelConfig, DataConfig or TrainConfig can be set as
`--field=value` (or `--field value`), nanoGPT's style; the value is checked
against the field's type, an unknown field names the close matches. A field
that two configs share sets both: `--seed` (data shuffling and training) and
`--vocab_size` (the data's tokenizer target; the model's vocabulary always
follows the tokenizer). With `--resume` and no `--preset`, the run's saved
configuration is the starting point, so `--resume --steps=4000` extends a run.

Bad input prints one line and exits with code 2; a diverged run (NaN/Inf
loss) exits with code 1, leaving its last good checkpoint. A finished run is
exported as a SavedModel (`llm_tf.export`) and generates from that export.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from llm_tf.commands.common import (
    OneLineParser,
    UsageError,
    check_tokenizer_from,
    import_tensorflow,
    quiet_tensorflow,
    run_main,
)
from llm_tf.commands.overrides import apply_overrides, fields_help, parse_overrides
from llm_tf.config import PRESETS, TASKS, DataConfig, TrainConfig, check_recompute, get_preset
from llm_tf.rundir import RunDir

# Named options that set config fields: option dest -> field name.
FIELD_OPTIONS = {"data": "source", "eval_data": "eval_source", "tokenizer": "tokenizer",
                 "steps": "steps", "seed": "seed", "precision": "precision"}
DEFAULT_PRESET = "tiny"
# The preset each task trains when --preset is not given.
TASK_PRESETS = {"lm": DEFAULT_PRESET, "translation": "translation"}
DEFAULT_RUNS_DIR = "runs"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="llm-tf train", allow_abbrev=False,
                           description=__doc__.split("\n")[0], epilog=fields_help(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help=f"model + data + training settings: "
                        f"{', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    parser.add_argument("--task", help=f"what to train: {', '.join(TASKS)} (default: the "
                        "preset's task, lm; translation trains an encoder-decoder on "
                        "source<TAB>target pairs with the 'translation' preset)")
    parser.add_argument("--data", help="corpus: 'builtin', a file/directory/glob, 'tfds:NAME', "
                        "or a directory made by `llm-tf prepare`; translation: "
                        "source<TAB>target lines (a file, directory or glob)")
    parser.add_argument("--eval-data", help="validation data in the form of --data (default: "
                        "hold out val_fraction of it)")
    parser.add_argument("--tokenizer", help="char, byte, wordpiece or sentencepiece")
    parser.add_argument("--tokenizer-from", metavar="DIR",
                        help="use the tokenizer of this run (or prepared) directory; with a "
                             "prepared --data it must be the one the data was made with")
    parser.add_argument("--run-dir", help="run directory (default runs/PRESET-TIMESTAMP)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in a --run-dir that holds a run")
    parser.add_argument("--steps", help="optimizer steps in total")
    parser.add_argument("--seed", help="seed of initialisation, dropout and data order")
    parser.add_argument("--precision", help="float32, mixed_bfloat16 or mixed_float16")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction,
                        help="compile the train step with XLA (default: the preset's choice)")
    parser.add_argument("--strategy", default="auto",
                        help="auto, default, mirrored, multi_worker or tpu (default auto)")
    parser.add_argument("--tpu", help="TPU address or name")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="pause after STEP (checkpointed); continue later with --resume")
    parser.add_argument("--no-sample", action="store_true", help="print no samples")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel export at the end")
    return parser


def resolve_task(args, saved=None) -> str:
    """The run's task: a resumed run's own; else --task; else the preset's ("lm" without one)."""
    if args.task is not None and args.task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}. Received: --task={args.task}")
    if saved is not None:
        if args.task is not None and args.task != saved.task:
            raise UsageError(f"--resume: the run in --run-dir is a {saved.task!r} run, not "
                             f"{args.task!r}.")
        return saved.task
    preset_task = get_preset(args.preset).task if args.preset else None
    if args.task and preset_task and args.task != preset_task:
        raise UsageError(f"--preset {args.preset} is a {preset_task!r} preset; for --task "
                         f"{args.task} use --preset {TASK_PRESETS[args.task]} (or no --preset).")
    return args.task or preset_task or "lm"


def resolve(args, overrides: dict[str, str], saved=None, task: str = "lm") -> dict:
    """The three configs the command line asks for; `saved` (a resumed run's `RunConfig`)
    is the starting point when no --preset is given, else the task's preset."""
    if saved is not None and args.preset is None:
        configs = {"model": saved.model, "data": saved.data or DataConfig(),
                   "train": saved.train or TrainConfig()}
    else:
        preset = get_preset(args.preset or TASK_PRESETS[task])
        configs = {"model": preset.model, "data": preset.data, "train": preset.train}
    named = {field: getattr(args, option) for option, field in FIELD_OPTIONS.items()
             if getattr(args, option) is not None}
    if args.jit_compile is not None:
        named["jit_compile"] = str(args.jit_compile).lower()
    configs = apply_overrides(configs, {**named, **overrides}, extra_names=(
        "preset", "run_dir", "resume", "overwrite", "jit_compile", "strategy", "tpu",
        "no_sample", "no_export", "data", "stop_at", "tokenizer_from", "task", "eval_data"))
    if task == "translation" and configs["data"].source == "builtin":
        raise UsageError("--task translation needs --data PAIRS (a file, directory or glob of "
                         "source<TAB>target lines).")
    check_recompute(configs["model"], configs["train"])
    if configs["data"].context_length > configs["model"].max_length:
        raise UsageError(f"`context_length`={configs['data'].context_length} is longer than the "
                         f"model's `max_length`={configs['model'].max_length}: raise "
                         "--max_length too.")
    return configs


# What `llm-tf prepare` fixed in a prepared directory: given again to `train`, each would be
# silently ignored (the shards are already tokenized and split), so it is refused.
PREPARED_FIELDS = {"tokenizer": "--tokenizer", "vocab_size": "--vocab_size",
                   "val_fraction": "--val_fraction", "eval_source": "--eval-data"}
# `llm_tf.data.corpus.MANIFEST_FILE`, named again here: importing it would load TensorFlow,
# and this check runs before.
PREPARED_MANIFEST = "manifest.json"


def check_data_options(args, overrides: dict[str, str], configs: dict) -> None:
    """Refuses options that the data source or --tokenizer-from make meaningless (they
    would be ignored without a word): a UsageError naming them."""
    given = {field for option, field in FIELD_OPTIONS.items()
             if getattr(args, option) is not None} | set(overrides)
    if args.tokenizer_from:
        learning = [PREPARED_FIELDS[f] for f in ("tokenizer", "vocab_size") if f in given]
        if learning:
            raise UsageError(f"--tokenizer-from reuses a tokenizer and {' and '.join(learning)} "
                             "would learn another: give one or the other.")
    source = configs["data"].source
    if "://" not in source and os.path.isfile(os.path.join(source, PREPARED_MANIFEST)):
        fixed = [option for field, option in PREPARED_FIELDS.items() if field in given]
        if fixed:
            raise UsageError(
                f"--data {source!r} is a prepared directory: its tokenizer and validation "
                f"split were fixed by `llm-tf prepare`, so {', '.join(fixed)} would be "
                "ignored; drop them (or prepare the text again with what you want).")


def _main(argv) -> int:
    quiet_tensorflow()
    args, rest = build_parser().parse_known_args(argv)
    overrides = parse_overrides(rest)
    if args.resume and not args.run_dir:
        raise UsageError("--resume needs --run-dir (the run to continue).")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pick one.")
    if args.tokenizer_from:
        check_tokenizer_from(args.tokenizer_from)
    if args.tokenizer_from and args.resume:
        raise UsageError("--resume keeps the run's own tokenizer; drop --tokenizer-from.")
    # The run directory, checked once, before TensorFlow starts: bad input fails fast. Only
    # the chief checks and writes it; other workers of a multi-worker run take part.
    from llm_tf.training.distribute import is_chief_task
    chief = is_chief_task()
    if args.resume:
        run_dir = RunDir.resume(args.run_dir) if chief else RunDir(args.run_dir)
    saved = run_dir.read_config() if args.resume else None
    task = resolve_task(args, saved)
    if task == "translation" and args.tokenizer_from:
        raise UsageError("--tokenizer-from is for language-model runs: a translation run learns "
                         "one tokenizer from both sides of its pairs.")
    path = args.run_dir or f"{DEFAULT_RUNS_DIR}/{args.preset or TASK_PRESETS[task]}-" \
                           f"{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.resume:
        run_dir = RunDir(path)
    configs = resolve(args, overrides, saved, task)
    check_data_options(args, overrides, configs)
    if args.resume and chief:
        run_dir.check_model(configs["model"])
    elif chief:
        run_dir = RunDir.create(path, args.overwrite)

    import_tensorflow()
    from llm_tf.training.distribute import get_strategy, is_chief
    from llm_tf.training.loop import TrainingDiverged
    strategy = get_strategy(args.strategy, tpu=args.tpu)
    tokenizer = None
    if args.tokenizer_from:  # a run's or a prepared directory's, perhaps remote (gs://)
        from llm_tf.data.prepared import join_path, read_tokenizer
        tokenizer = read_tokenizer(join_path(args.tokenizer_from, "tokenizer"))
    try:
        run = _train(task, configs, run_dir, args, strategy, tokenizer)
    except TrainingDiverged as error:
        print(f"llm-tf: training diverged: {error}", file=sys.stderr)
        return 1
    if not is_chief(strategy):
        return 0
    result = run.result
    finished = result.step >= configs["train"].steps
    status = 0
    if finished and not args.no_export:
        try:
            if task == "translation":
                export_and_translate(run.run_dir, configs["data"])
            else:
                export_and_sample(run.run_dir, seed=configs["train"].seed)
        except Exception as error:  # the trained run is complete and saved regardless
            reason = (str(error).strip().splitlines() or [""])[0]
            print(f"llm-tf: export failed ({type(error).__name__}: {reason}); the run is saved: "
                  f"retry with `llm-tf export {run.run_dir}`", file=sys.stderr)
            status = 1
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    where = (f"weights in {run.run_dir}" if finished else
             f"paused; continue with --resume --run-dir {run.run_dir}")
    print(f"{'done' if finished else 'paused'}: step {result.step}, train loss "
          f"{fmt(result.train_loss)}, val loss {fmt(result.val_loss)} ({where})")
    return status


def _train(task: str, configs: dict, run_dir: RunDir, args, strategy, tokenizer=None):
    """Runs the task's training (TensorFlow imported), with what it prints and measures."""
    common = dict(resume=args.resume, strategy=strategy, stop_at=args.stop_at)
    if task == "translation":
        from llm_tf.evaluation import validation_bleu
        from llm_tf.generation.translator import translation_sampler
        from llm_tf.translation import train_translation
        return train_translation(configs["model"], configs["data"], configs["train"], run_dir,
                                 sampler=None if args.no_sample else translation_sampler,
                                 evaluator=validation_bleu, **common)
    from llm_tf.generation import training_sampler
    from llm_tf.training.run import train
    sampler = None if args.no_sample else training_sampler(configs["train"].sample_length,
                                                           configs["train"].seed)
    return train(configs["model"], configs["data"], configs["train"], run_dir,
                 sampler=sampler, tokenizer=tokenizer, **common)


def export_and_translate(run_dir: RunDir, data: DataConfig) -> None:
    """Exports a translation run and prints a translation made by the *exported* model
    (loaded back with TensorFlow alone) of the first validation (or training) source."""
    import tensorflow as tf

    from llm_tf import export
    from llm_tf.data.pairs import load_pairs
    out_dir = export.export_run(run_dir)
    translator = export.load_saved_model(out_dir, function="translate")
    source = load_pairs(data.eval_source or data.source).sources[0]
    text = translator.translate(tf.constant([source]), tf.constant(4), tf.constant(0.6))
    print(f"exported to {out_dir}; translated by the export (beam 4):\n{source}\n"
          f"→ {text.numpy()[0].decode('utf-8', 'replace')}\n-----")


def export_and_sample(run_dir: RunDir, seed: int = 0) -> None:
    """Exports the run as a SavedModel and prints a generation made by the *exported*
    model, loaded back with TensorFlow alone."""
    import tensorflow as tf

    from llm_tf import export
    from llm_tf.generation import Sampling
    out_dir = export.export_run(run_dir)
    generator = export.load_saved_model(out_dir)
    model = run_dir.read_config().model
    sampling = Sampling(temperature=0.8, top_k=min(200, model.vocab_size), seed=seed % 2**31)
    texts = generator.generate(tf.constant(["\n"]),
                               tf.constant(min(100, model.max_length - 2)), *sampling.tensors())
    print(f"exported to {out_dir}; generated by the export:\n"
          f"{texts.numpy()[0].decode('utf-8', 'replace')}\n-----")


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
