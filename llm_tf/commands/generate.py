"""`llm-tf generate`: text from a run directory (streamed) or from a SavedModel.

    llm-tf generate --run runs/tiny --prompt "ROMEO:" --max-new-tokens 200 \\
        --temperature 0.8 --top-k 40 --seed 1
    llm-tf generate --saved-model runs/tiny/saved_model --prompt "ROMEO:" --num-samples 3

With `--run` and one sample, the text appears as it is made (one cached step per
token); otherwise all samples are generated in one batch by the compiled loop
(or the SavedModel) and printed when done. Each sample is printed as prompt
followed by its continuation. An instruction-tuned run (`llm-tf finetune --task
instruct`) reads each prompt inside its template (config.json's
`finetune.prompt_template`) and stops at the end of its answer (EOS), in memory and in
its export alike.
"""

from __future__ import annotations

import sys

from llm_tf.commands.common import OneLineParser, run_main
from llm_tf.generation.decode import check_max_new_tokens
from llm_tf.generation.generator import Generator
from llm_tf.generation.samplers import Sampling

DEFAULT_MAX_NEW_TOKENS = 200


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="llm-tf generate",
        description="Generate text with a trained model (KV cache, seeded sampling).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR", help="run directory written by llm-tf train")
    source.add_argument("--saved-model", metavar="DIR", help="SavedModel written by llm-tf export")
    parser.add_argument("--prompt", action="append", default=None,
                        help="prompt text (repeat for several prompts; default: empty, "
                             "which starts from BOS)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"tokens to generate (default: {DEFAULT_MAX_NEW_TOKENS}, at most "
                             "half the context); at most max_length - 1")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softmax temperature; 0 = greedy (default 1.0)")
    parser.add_argument("--top-k", type=int, default=0,
                        help="keep the k most likely tokens; 0 = off")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="nucleus sampling mass in (0, 1]; 1 = off")
    parser.add_argument("--seed", type=int, default=None,
                        help="sampling seed (default: a random one, printed to stderr)")
    parser.add_argument("--num-samples", type=int, default=1, help="samples per prompt")
    parser.add_argument("--weights", default=None,
                        help="with --run: weights file (default RUN_DIR/model.weights.h5)")
    parser.add_argument("--no-stream", action="store_true",
                        help="with --run: generate in one compiled call, print at the end")
    return parser


def _print_samples(prompts, continuations, num_samples) -> None:
    for i, (prompt, text) in enumerate(zip(prompts, continuations)):
        if len(continuations) > 1:
            print(f"=== sample {i % num_samples + 1}/{num_samples} of prompt "
                  f"{i // num_samples + 1} ===")
        print(prompt + text, flush=True)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    if args.num_samples < 1:
        raise ValueError(f"`--num-samples` must be >= 1. Received: {args.num_samples}")
    if args.saved_model and (args.weights or args.no_stream):
        raise ValueError("`--weights` and `--no-stream` apply to --run only.")
    prompts = args.prompt or [""]
    rows = [p for p in prompts for _ in range(args.num_samples)]

    if args.saved_model:
        import tensorflow as tf

        from llm_tf.config import apply_template
        from llm_tf.export import load_saved_model
        loaded = load_saved_model(args.saved_model)
        max_new = _max_new_tokens(args.max_new_tokens, int(loaded.max_length.numpy()))
        _report_seed(args, sampling)
        texts = loaded.generate(tf.constant(rows), tf.constant(max_new), *sampling.tensors())
        template = _exported_template(loaded)  # an instruct export applies it in the graph
        shown = rows if template is None else [apply_template(template, r) for r in rows]
        _print_samples(shown, [t.decode("utf-8", errors="replace") for t in texts.numpy()],
                       args.num_samples)
        return 0

    from llm_tf.saving import load
    run = load(args.run, weights=args.weights)
    if run.config.task == "classify":
        raise ValueError(f"{args.run!r} is a classifier: it does not generate text (score it "
                         "with `llm-tf evaluate`, or export it and call `classify`).")
    if run.config.task == "instruct":  # the prompt inside the template the run learned
        rows = [run.config.finetune.format_prompt(p) for p in rows]
    max_new = _max_new_tokens(args.max_new_tokens, run.model.config.max_length)
    _report_seed(args, sampling)
    parameters = dict(temperature=sampling.temperature, top_k=sampling.top_k,
                      top_p=sampling.top_p, seed=sampling.seed)
    if len(rows) == 1 and not args.no_stream:
        generator = Generator(run.model, run.tokenizer, compile="xla")
        print(rows[0], end="", flush=True)
        for piece in generator.stream(rows[0], max_new, **parameters):
            print(piece, end="", flush=True)
        print()
        return 0
    generator = Generator(run.model, run.tokenizer)
    _print_samples(rows, generator.generate(rows, max_new, **parameters), args.num_samples)
    return 0


def _exported_template(loaded):
    """The prompt template an instruction-tuned export applies, or None."""
    import json

    import tensorflow as tf

    asset = getattr(loaded, "model_config", None)
    if asset is None:
        return None
    # Next to the SavedModel, which may be on any tf.io.gfile filesystem (gs://).
    with tf.io.gfile.GFile(asset.asset_path.numpy().decode("utf-8"), "r") as f:
        return json.load(f).get("prompt_template")


def _report_seed(args, sampling: Sampling) -> None:
    if args.seed is None and sampling.temperature > 0:
        print(f"seed: {sampling.seed} (pass --seed {sampling.seed} to repeat)", file=sys.stderr)


def _max_new_tokens(requested, max_length: int) -> int:
    if requested is None:
        return min(DEFAULT_MAX_NEW_TOKENS, max_length // 2)
    check_max_new_tokens(requested, max_length)
    return requested


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
