"""`llm-tf evaluate --run RUN --data TEST`: a trained run scored on held-out data, as one JSON line.

    llm-tf evaluate --run runs/tiny --data held_out.txt
    {"loss": 1.52, "perplexity": 4.57, "tokens": 112000}

What is measured follows the run's task (its config.json):

* "lm": cross-entropy per token and perplexity over the whole text (`--data` takes the
  same sources as `llm-tf train --data`; for a directory made by `llm-tf prepare`, its
  validation shards, which must have been made with the run's tokenizer);
* "translation": every source of a `source<TAB>target` file translated, corpus BLEU and
  chrF against the targets (sacrebleu, default settings); the translations, one a line,
  go to `--hypotheses` (default RUN_DIR/hypotheses/TEST-beamN.txt):

      llm-tf evaluate --run runs/de-en --data de-en.test.tsv --beam-size 4
      {"bleu": 21.3, "chrf": 45.1, "sentences": 1000, "beam_size": 4, "length_penalty": 0.6,
       "hypotheses": "runs/de-en/hypotheses/de-en.test-beam4.txt"}

* "classify": accuracy and macro-F1 (what the run's metrics.jsonl records) and the mean
  cross-entropy on `label<TAB>text` lines; a label the run never saw is refused;
* "instruct": cross-entropy per response token and perplexity (prompts carry no loss, as
  in training), and the share of greedy answers equal to the reference, on
  `prompt<TAB>response` lines.

The scoring itself lives in `llm_tf.evaluation`; this command reads the run, checks the
input and prints.
"""

from __future__ import annotations

import json
import sys

from llm_tf.commands.common import OneLineParser, UsageError, run_main
from llm_tf.rundir import RunDir


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="llm-tf evaluate", allow_abbrev=False,
                           description="Score a trained run on held-out data; prints one JSON "
                                       "line.")
    parser.add_argument("--run", required=True, metavar="RUN_DIR",
                        help="run directory written by llm-tf train or llm-tf finetune")
    parser.add_argument("--data", required=True, metavar="TEST",
                        help="held-out data, in the form the run's task reads")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per batch (default: the run's batch size; translation: "
                             "64 sentences)")
    parser.add_argument("--beam-size", type=int, default=1,
                        help="translation: beam size (1 = greedy, the default)")
    parser.add_argument("--length-penalty", type=float, default=0.6,
                        help="translation: GNMT length penalty alpha (default 0.6)")
    parser.add_argument("--hypotheses", metavar="PATH", default=None,
                        help="translation: where to write the translations, one a line "
                             "(default RUN_DIR/hypotheses/TEST-beamN.txt)")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    run_dir = RunDir.open(args.run)
    config = run_dir.read_config()
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1. Received: {args.batch_size}")
    if args.beam_size < 1:
        raise UsageError(f"--beam-size must be >= 1. Received: {args.beam_size}")
    if args.length_penalty < 0:
        raise UsageError(f"--length-penalty must be >= 0. Received: {args.length_penalty}")
    if config.task == "lm":
        scores = _evaluate_language_model(run_dir, config, args)
    elif config.task == "translation":
        scores = _evaluate_translation(run_dir, args)
    elif config.task == "classify":
        scores = _evaluate_classifier(run_dir, config, args)
    elif config.task == "instruct":
        scores = _evaluate_instructions(run_dir, config, args)
    else:
        raise UsageError(f"llm-tf evaluate does not know how to score a {config.task!r} run.")
    print(json.dumps(scores))
    return 0


def _evaluate_language_model(run_dir, config, args) -> dict:
    from llm_tf.data import load_corpus
    from llm_tf.data.prepared import PreparedCorpus, is_prepared
    from llm_tf.evaluation import evaluate_language_model, evaluate_prepared_validation
    from llm_tf.saving import load

    data = config.data
    context = data.context_length if data else config.model.max_length
    batch_size = args.batch_size or (data.batch_size if data else 8)
    # The data is checked before the model loads: bad input fails in seconds.
    if is_prepared(args.data):  # its validation shards, already tokenized
        prepared = PreparedCorpus(args.data)
        run = load(run_dir)
        return evaluate_prepared_validation(run.model, run.tokenizer, prepared, context,
                                            batch_size)
    corpus = load_corpus(args.data)
    corpus.validate()
    run = load(run_dir)
    return evaluate_language_model(run.model, run.tokenizer, corpus, context, batch_size)


def _evaluate_translation(run_dir, args) -> dict:
    from pathlib import Path

    from llm_tf.data.pairs import load_pairs
    from llm_tf.evaluation import evaluate_translation
    from llm_tf.generation.translator import DEFAULT_BATCH_SIZE, Translator
    from llm_tf.saving import load

    pairs = load_pairs(args.data, 1, "test pairs")
    run = load(run_dir)
    translator = Translator(run.model, run.tokenizer,
                            batch_size=args.batch_size or DEFAULT_BATCH_SIZE)
    scores, hypotheses = evaluate_translation(translator, pairs, args.beam_size,
                                              args.length_penalty)
    path = Path(args.hypotheses) if args.hypotheses else (
        run_dir.path / "hypotheses" / f"{Path(args.data).stem}-beam{args.beam_size}.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(h.replace("\n", " ") + "\n" for h in hypotheses),
                    encoding="utf-8")
    return {**scores, "beam_size": args.beam_size, "length_penalty": args.length_penalty,
            "hypotheses": str(path)}


def _evaluate_classifier(run_dir, config, args) -> dict:
    from llm_tf.data import encode_texts, read_labelled_texts
    from llm_tf.evaluation import ClassifierScorer
    from llm_tf.saving import load

    examples = read_labelled_texts(args.data, config.finetune.labels)
    run = load(run_dir)
    length = config.data.context_length if config.data else config.model.max_length
    token_ids, _ = encode_texts(run.tokenizer, examples.texts, length)
    batch_size = args.batch_size or (config.data.batch_size if config.data else 32)
    return ClassifierScorer(run.model, token_ids, examples.labels, batch_size).evaluate()


def _evaluate_instructions(run_dir, config, args) -> dict:
    import numpy as np

    from llm_tf.data import encode_instructions, read_instructions
    from llm_tf.evaluation import evaluate_instructions
    from llm_tf.saving import load

    pairs = read_instructions(args.data)
    run = load(run_dir)
    finetune, max_length = config.finetune, config.model.max_length
    length = config.data.context_length if config.data else max_length
    encoded = encode_instructions(run.tokenizer, pairs, finetune.format_prompt, length)
    # Room for the longest reference answer and its EOS (the prompt keeps a token).
    longest = int(np.max(run.tokenizer.encode(list(pairs.responses)).row_lengths()))
    batch_size = args.batch_size or (config.data.batch_size if config.data else 32)
    return evaluate_instructions(run.model, run.tokenizer, encoded,
                                 [finetune.format_prompt(p) for p in pairs.prompts],
                                 pairs.responses, batch_size,
                                 max_new_tokens=min(longest + 1, max_length - 1))


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
