"""`llm-tf finetune`: a pre-trained run adapted to a task (design document §2.2, §2.2.2).

    llm-tf finetune --from runs/tiny --task classify --data spam.train.tsv \\
        --eval-data spam.test.tsv --run-dir runs/spam --method lora --lora_rank=4
    llm-tf finetune --from runs/tiny --task instruct --data pairs.tsv --run-dir runs/qa
    llm-tf finetune --from runs/tiny --task lm --data my_domain.txt --run-dir runs/domain
    llm-tf finetune --run-dir runs/spam --resume            # continue exactly

Tasks: `classify` (`label<TAB>text` lines: a classification head), `instruct`
(`prompt<TAB>response` lines: loss on the responses only) and `lm` (text: continued
pre-training). Methods: `full` (every weight trains), `frozen` (feature extraction: only the
head trains), `lora` (low-rank adapters on the attention projections, and the head).
Any field of DataConfig, TrainConfig, FinetuneConfig (and `dropout`) can be set as
`--field=value`; the architecture and the tokenizer are the pre-trained run's.

The run directory is a run like any other (config.json with a "finetune" section naming
the run it started from, the pre-trained tokenizer, checkpoints, metrics.jsonl,
TensorBoard, model.weights.h5), exported as a SavedModel at the end (a classifier's takes
strings and returns labels and probabilities). Bad input prints one line and exits with
code 2. docs/fine-tuning.md has the details and the measurements.
"""

from __future__ import annotations

import argparse
import sys

from llm_tf.commands.common import OneLineParser, UsageError, import_tensorflow, run_main
from llm_tf.commands.overrides import fields_help, parse_overrides, typed_values
from llm_tf.config import FINETUNE_METHODS, DataConfig, FinetuneConfig, ModelConfig, TrainConfig

TASKS = ("classify", "instruct", "lm")
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
            "finetune": FinetuneConfig}
OPTIONS = ("from", "task", "data", "eval_data", "run_dir", "method", "epochs", "resume",
           "overwrite", "stop_at", "no_sample", "no_export")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="llm-tf finetune", allow_abbrev=False,
                           description=__doc__.split("\n")[0], epilog=fields_help(SECTIONS),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                        help="the pre-trained run directory (llm-tf train)")
    parser.add_argument("--task", choices=TASKS, help="what to fine-tune for")
    parser.add_argument("--data", metavar="TRAIN",
                        help="training data: label<TAB>text lines (classify), "
                             "prompt<TAB>response lines (instruct), text (lm)")
    parser.add_argument("--eval-data", metavar="TEST", default="",
                        help="evaluation data in the same form (default: hold out "
                             "val_fraction of --data)")
    parser.add_argument("--run-dir", metavar="OUT", help="the fine-tuned run's directory")
    parser.add_argument("--method", choices=FINETUNE_METHODS,
                        help="full (default), frozen (classify: only the head trains) or lora")
    parser.add_argument("--epochs", type=float,
                        help="passes over the training examples (classify, instruct; "
                             "default 3); --steps sets the length instead")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in a --run-dir that holds a run")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="pause after STEP (checkpointed); continue later with --resume")
    parser.add_argument("--no-sample", action="store_true", help="print no samples")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel export at the end")
    return parser


def _main(argv) -> int:
    args, rest = build_parser().parse_known_args(argv)
    fields = typed_values(parse_overrides(rest), OPTIONS, SECTIONS, command="llm-tf finetune")
    if not args.run_dir:
        raise UsageError("--run-dir is required (the fine-tuned run's directory).")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pick one.")
    if not args.resume:
        missing = [name for name, value in (("--from", args.from_run), ("--task", args.task),
                                            ("--data", args.data)) if not value]
        if missing:
            raise UsageError(f"{', '.join(missing)} required (or --resume a run).")
    elif args.data or args.eval_data:
        raise UsageError("a resumed run reads the data it started with: drop --data and "
                         "--eval-data.")

    import_tensorflow()
    from llm_tf.fine_tuning.run import new_plan, resumed_plan, run_plan
    from llm_tf.training.loop import TrainingDiverged

    if args.resume:
        plan = resumed_plan(args.run_dir, args.from_run, args.task, args.method, fields,
                            epochs=args.epochs)
    else:
        plan = new_plan(args.from_run, args.task, args.data, args.run_dir,
                        eval_data=args.eval_data, method=args.method or "full",
                        overwrite=args.overwrite, fields=fields, epochs=args.epochs)
    try:
        run = run_plan(plan, stop_at=args.stop_at,
                       sample=not args.no_sample)
    except TrainingDiverged as error:
        print(f"llm-tf: training diverged: {error}", file=sys.stderr)
        return 1
    result = run.result
    steps = run.run_dir.read_config().train.steps
    finished = result.step >= steps
    status = 0
    if finished and not args.no_export:
        from llm_tf.export import export_run
        try:
            print(f"exported to {export_run(run.run_dir)}")
        except Exception as error:  # the trained run is complete and saved regardless
            reason = (str(error).strip().splitlines() or [""])[0]
            print(f"llm-tf: export failed ({type(error).__name__}: {reason}); the run is saved: "
                  f"retry with `llm-tf export {run.run_dir}`", file=sys.stderr)
            status = 1
    metrics = result.metrics or {}
    scores = "".join(f", {name} {metrics[name]:.4f}" for name in ("accuracy", "macro_f1")
                     if metrics.get(name) is not None)
    if metrics.get("majority_accuracy") is not None:
        scores += f" (majority class {metrics['majority_accuracy']:.4f})"
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    where = (f"weights in {run.run_dir}" if finished else
             f"paused; continue with --resume --run-dir {run.run_dir}")
    print(f"{'done' if finished else 'paused'}: step {result.step}, train loss "
          f"{fmt(result.train_loss)}, val loss {fmt(result.val_loss)}{scores} ({where})")
    return status


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
