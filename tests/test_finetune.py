"""`llm-tf finetune` end to end: every task and method through the command line, LoRA's
trainable count, merge and exact resume after a kill, prompt masking, a pattern learned by
instruction tuning, the classifier's SavedModel without llm_tf, and the bad inputs."""

import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from training_util import TINY_CLI, popen_python, run_python, write_corpus

from llm_tf import finetune, saving
from llm_tf.commands import evaluate as evaluate_cli
from llm_tf.commands import finetune as cli
from llm_tf.commands import generate as generate_cli
from llm_tf.commands import train as train_cli
from llm_tf.config import FinetuneConfig
from llm_tf.data import encode_instructions, read_instructions
from llm_tf.evaluation import ClassifierScorer
from llm_tf.models import TransformerLM
from llm_tf.rundir import RunDir
from llm_tf.tokenizers import IGNORE_LABEL, CharTokenizer
from llm_tf.training.losses import token_loss_sum
from llm_tf.training.run import read_metrics

D, LAYERS = 32, 2  # TINY_CLI's d_model and num_layers
HAM = "meeting lunch notes project review thanks agenda report minutes draft".split()
SPAM = "WIN FREE CASH NOW CLICK PRIZE OFFER URGENT MONEY BONUS".split()


def run_cli(main, argv):
    """(exit code, stdout, stderr) of a command's `main(argv)`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


def made_up_mail(rng, count):
    """`label<TAB>text` lines, two ham for one spam: each text mixes words of its class
    with some of the other's, so the classes overlap a little."""
    lines = []
    for i in range(count):
        label, own, other = ("spam", SPAM, HAM) if i % 3 == 2 else ("ham", HAM, SPAM)
        words = rng.choices(own, k=5) + rng.choices(other, k=1)
        rng.shuffle(words)
        lines.append(f"{label}\t{' '.join(words)}")
    return lines


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcdefgh") for _ in range(3)) for _ in range(300)})
    rng.shuffle(words)  # instruction pattern: repeat the prompt's three letters
    return {
        "root": root,
        "corpus": write_corpus(root / "text.txt"),
        "train": write_lines(root / "mail.train.tsv", made_up_mail(rng, 96)),
        "test": write_lines(root / "mail.test.tsv", made_up_mail(rng, 48)),
        "pairs": write_lines(root / "copy.train.tsv", [f"{w}\t{w}" for w in words[:-20]]),
        "held_out": write_lines(root / "copy.test.tsv", [f"{w}\t{w}" for w in words[-20:]]),
    }


@pytest.fixture(scope="module")
def pretrained(files):
    """A tiny language model pre-trained for 40 steps on the corpus (once per module)."""
    run_dir = files["root"] / "pretrained"
    code, out, err = run_cli(train_cli.main, [
        "--data", files["corpus"], *TINY_CLI, "--steps=40", "--eval_interval=20",
        "--learning_rate=3e-3", "--no-export", "--run-dir", str(run_dir)])
    assert code == 0, err
    return str(run_dir)


def classify_argv(files, pretrained, run_dir, method, *extra):
    return ["--from", pretrained, "--task", "classify", "--data", files["train"],
            "--eval-data", files["test"], "--run-dir", str(run_dir), "--method", method,
            "--steps=8", "--batch_size=16", "--log_interval=4", "--lora_rank=2", *extra]


@pytest.fixture(scope="module")
def classify_runs(files, pretrained):
    """{method: (run directory, stdout)}: 8 steps of each method; the LoRA run exports."""
    runs = {}
    for method in ("full", "frozen", "lora"):
        run_dir = files["root"] / f"classify-{method}"
        extra = () if method == "lora" else ("--no-export",)
        code, out, err = run_cli(cli.main, classify_argv(files, pretrained, run_dir, method,
                                                          *extra))
        assert code == 0, err
        runs[method] = (run_dir, out)
    return runs


def stack_weights(model):
    return {v.path.split("/", 1)[1]: v.numpy() for v in model.decoder.weights}


@pytest.mark.parametrize("method", ["full", "frozen", "lora"])
def test_classify_through_the_cli(classify_runs, files, pretrained, method):
    run_dir, out = classify_runs[method]
    config = RunDir(run_dir).read_config()
    assert config.task == "classify" and config.finetune.method == method
    assert config.finetune.from_run == os.path.abspath(pretrained)  # where it started
    assert config.finetune.labels == ("ham", "spam")
    assert config.data.source == files["train"] and config.train.steps == 8
    for name in os.listdir(RunDir(pretrained).tokenizer_dir):  # the tokenizer, unchanged
        assert (RunDir(run_dir).tokenizer_dir / name).read_bytes() == \
            (RunDir(pretrained).tokenizer_dir / name).read_bytes()
    # Imbalance is reported: the class counts, and the majority class's share.
    assert "ham 64 / spam 32, majority 66.7%" in out
    assert "(majority class 0.6667)" in out.splitlines()[-1]

    rows = read_metrics(RunDir(run_dir).metrics_file)
    assert [r["step"] for r in rows] == [6, 8]  # every epoch (6 steps), and the final model
    assert all({"accuracy", "macro_f1", "majority_accuracy", "val_loss"} <= set(r)
               for r in rows)
    code, printed, err = run_cli(evaluate_cli.main, ["--run", str(run_dir), "--data",
                                                     files["test"]])
    assert code == 0, err
    scores = json.loads(printed.strip())
    assert scores["examples"] == 48 and scores["majority_accuracy"] == pytest.approx(2 / 3)
    for name in ("accuracy", "macro_f1"):
        assert scores[name] == pytest.approx(rows[-1][name], abs=1e-9)
    assert scores["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-4)

    # What trained: frozen keeps the pre-trained stack as it was, full and lora change it.
    tuned = stack_weights(saving.load(run_dir).model)
    before = stack_weights(saving.load(pretrained).model)
    assert tuned.keys() == before.keys()
    changed = [k for k in tuned if not np.array_equal(tuned[k], before[k])]
    if method == "frozen":
        assert changed == []
    elif method == "lora":  # merged adapters: query and value kernels only
        assert changed and all(re.search(r"(query|value)/kernel$", k) for k in changed)
    else:
        assert len(changed) == len(tuned)


def test_trainable_parameters_are_printed_and_lora_trains_adapters_and_head(classify_runs):
    head = D * 2 + 2
    adapters = LAYERS * 2 * 2 * (D + D)  # layers x (query, value) x r x (d_in + d_out)
    assert f"({head:,} trainable)" in classify_runs["frozen"][1]
    assert f"({adapters + head:,} trainable)" in classify_runs["lora"][1]
    assert "trainable)" not in classify_runs["full"][1]  # everything trains


def test_from_random_initialisation_is_the_same_classifier_without_pre_training(
        files, pretrained, tmp_path):
    run_dir = tmp_path / "scratch"
    code, _, err = run_cli(cli.main, classify_argv(files, pretrained, run_dir, "full",
                                                   "--pretrained_weights=false", "--steps=1",
                                                   "--no-export"))
    assert code == 0, err
    assert RunDir(run_dir).read_config().finetune.pretrained_weights is False
    # One step from N(0, 0.02) cannot reach the pre-trained weights.
    tuned = stack_weights(saving.load(run_dir).model)
    before = stack_weights(saving.load(pretrained).model)
    assert all(np.abs(tuned[k] - before[k]).max() > 1e-2 for k in tuned if "embedding" in k)


def test_lora_merged_weights_give_the_unmerged_outputs(files, pretrained, tmp_path):
    run = finetune(pretrained, "classify", files["train"], tmp_path / "lora",
                   eval_data=files["test"], method="lora", steps=4, lora_rank=2,
                   lora_targets="query,key,value,attention_output", batch_size=16,
                   stream=io.StringIO())
    assert any("lora_kernel_b" in v.path for v in run.model.weights)
    assert any(np.abs(v.numpy()).max() > 0 for v in run.model.weights
               if "lora_kernel_b" in v.path)  # the adapters moved
    merged = saving.load(tmp_path / "lora").model
    assert not any("lora" in v.path for v in merged.weights)  # a plain classifier
    ids = run.tokenizer.encode(tf.constant(["WIN CASH NOW", "notes on the lunch meeting"]))
    ids = ids.to_tensor(shape=(2, 32))  # right-padded with PAD (0)
    np.testing.assert_allclose(merged(ids).numpy(), run.model(ids).numpy(), atol=1e-5)


def latest_step(run_dir):
    path = tf.train.latest_checkpoint(RunDir(run_dir).checkpoint_dir)
    return None if path is None else int(path.rsplit("-", 1)[1])


def test_a_lora_run_resumes_exactly_after_kill_9(files, pretrained, tmp_path):
    length = ["--steps=3000", "--eval_interval=2", "--log_interval=2", "--keep_checkpoints=2",
              "--no-export"]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    victim = popen_python(["-m", "llm_tf", "finetune", *classify_argv(
        files, pretrained, killed, "lora", *length)])
    try:
        while (latest_step(killed) or 0) < 4:
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    step = latest_step(killed)
    stop = step + 4
    code, out, err = run_cli(cli.main, ["--resume", "--run-dir", str(killed), "--stop-at",
                                        str(stop)])
    assert code == 0, err
    assert f"resuming at step {step} " in out and f"paused: step {stop}," in out
    code, _, err = run_cli(cli.main, classify_argv(files, pretrained, straight, "lora",
                                                   *length, "--stop-at", str(stop)))
    assert code == 0, err
    first = tf.train.load_checkpoint(tf.train.latest_checkpoint(RunDir(killed).checkpoint_dir))
    second = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(RunDir(straight).checkpoint_dir))
    names = first.get_variable_to_shape_map()
    assert names == second.get_variable_to_shape_map()
    plain = len(saving.load(straight).model.weights)  # the adapters are checkpointed too
    assert sum(n.startswith("variables/") for n in names) == plain + 2 * 2 * LAYERS
    bookkeeping = {"_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"}
    for name in set(names) - bookkeeping:
        # weights, adapters, optimizer moments, step: to the bit
        np.testing.assert_array_equal(first.get_tensor(name), second.get_tensor(name),
                                      err_msg=name)
    evaluations = [{k: r[k] for k in ("step", "val_loss", "accuracy", "macro_f1")}
                   for r in read_metrics(RunDir(killed).metrics_file)]
    assert evaluations == [{k: r[k] for k in ("step", "val_loss", "accuracy", "macro_f1")}
                           for r in read_metrics(RunDir(straight).metrics_file)]


# Runs in a fresh interpreter that refuses to import llm_tf.
FRESH_PROCESS = textwrap.dedent("""
    import importlib.abc, json, sys

    class RefuseLlmTf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "llm_tf" or name.startswith("llm_tf."):
                raise ImportError("the SavedModel must not need llm_tf: " + name)

    sys.meta_path.insert(0, RefuseLlmTf())
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    directory, texts = json.loads(sys.argv[1])
    classify = tf.saved_model.load(directory).signatures["classify"]
    result = classify(texts=tf.constant(texts))
    print(json.dumps({
        "labels": [t.decode() for t in result["labels"].numpy()],
        "probabilities": result["probabilities"].numpy().tolist(),
        "llm_tf_imported": any(m.startswith("llm_tf") for m in sys.modules),
    }))
""")


def test_the_classifier_savedmodel_classifies_strings_without_llm_tf(classify_runs, tmp_path):
    run_dir, out = classify_runs["lora"]
    assert f"exported to {run_dir / 'saved_model'}" in out
    texts = ["WIN FREE CASH NOW", "review of the project agenda", "", "lunch " * 40]
    done = run_python(["-c", FRESH_PROCESS, json.dumps([str(run_dir / "saved_model"), texts])],
                      cwd=tmp_path)
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["llm_tf_imported"] is False

    run = saving.load(run_dir)
    # What the fine-tuning read: the first T tokens, right-padded (an empty text: none).
    ids = [row[:32] for row in run.tokenizer.encode(tf.constant(texts)).to_list()]
    ids = np.array([row + [0] * (32 - len(row)) for row in ids], np.int32)
    expected = ClassifierScorer(run.model, ids, [0] * len(texts), 8).probabilities()
    np.testing.assert_allclose(fresh["probabilities"], expected, atol=1e-5)
    names = run.config.finetune.labels
    assert fresh["labels"] == [names[i] for i in expected.argmax(axis=-1)]


def test_instruct_learns_a_pattern_and_answers_held_out_prompts(files, pretrained, tmp_path):
    run_dir = tmp_path / "copy"
    code, out, err = run_cli(cli.main, [
        "--from", pretrained, "--task", "instruct", "--data", files["pairs"], "--eval-data",
        files["held_out"], "--run-dir", str(run_dir), "--steps=500", "--learning_rate=3e-3",
        "--batch_size=16", "--context_length=16", "--log_interval=100", "--no-export"])
    assert code == 0, err
    rows = read_metrics(RunDir(run_dir).metrics_file)
    assert rows[-1]["step"] == 500 and rows[-1]["val_loss"] < rows[0]["val_loss"]
    code, printed, err = run_cli(evaluate_cli.main, ["--run", str(run_dir), "--data",
                                                     files["held_out"]])
    assert code == 0, err
    scores = json.loads(printed)
    assert scores["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-4)
    assert scores["exact_match"] >= 0.9, scores  # held-out prompts: the pattern, not a table

    # Generation reads the prompt in the template and stops at the end of the answer.
    prompts = [line.split("\t")[0] for line in open(files["held_out"]).read().splitlines()]
    code, printed, err = run_cli(generate_cli.main, [
        "--run", str(run_dir), "--temperature", "0", "--max-new-tokens", "12", "--no-stream",
        *[a for p in prompts[:3] for a in ("--prompt", p)]])
    assert code == 0, err
    for prompt in prompts[:3]:
        assert f"Q: {prompt}\nA: {prompt}\n" in printed + "\n"


def test_instruct_lora_through_the_cli(files, pretrained, tmp_path):
    code, out, err = run_cli(cli.main, [
        "--from", pretrained, "--task", "instruct", "--data", files["pairs"],
        "--run-dir", str(tmp_path / "qa"), "--method", "lora", "--lora_rank=2", "--steps=4",
        "--batch_size=8", "--context_length=16", "--no-export"])
    assert code == 0, err
    assert f"({LAYERS * 2 * 2 * (D + D):,} trainable)" in out  # adapters only: no head
    assert "held-out pairs" in out  # no --eval-data: val_fraction of --data
    config = RunDir(tmp_path / "qa").read_config()
    assert config.task == "instruct" and config.finetune.method == "lora"


@pytest.mark.parametrize("method", ["full", "lora"])
def test_lm_continued_pretraining_through_the_cli(files, pretrained, tmp_path, method):
    run_dir = tmp_path / method
    code, out, err = run_cli(cli.main, [
        "--from", pretrained, "--task", "lm", "--data", files["corpus"], "--run-dir",
        str(run_dir), "--method", method, "--steps=2", "--no-export", "--no-sample"])
    assert code == 0, err
    assert RunDir(run_dir).read_config().finetune.from_run == os.path.abspath(pretrained)
    # It starts where pre-training ended, not from a random model's ln(V).
    first = read_metrics(RunDir(run_dir).metrics_file)[0]["val_loss"]
    pretrained_loss = read_metrics(RunDir(pretrained).metrics_file)[-1]["val_loss"]
    assert first == pytest.approx(pretrained_loss, abs=0.15)
    assert first < np.log(saving.load(pretrained).tokenizer.vocab_size) - 0.5


def test_prompt_tokens_carry_no_gradient(tmp_path):
    """The instruct loss, as the train step computes it: its gradient with respect to the
    logits is zero at every prompt position, so no weight learns from predicting prompts."""
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz :\n?QA")
    path = write_lines(tmp_path / "pairs.tsv", ["what is up?\tsky", "abc\tcba"])
    pairs = read_instructions(path)
    template = FinetuneConfig(from_run="x")
    encoded = encode_instructions(tokenizer, pairs, template.format_prompt, 24)
    model = TransformerLM.from_preset("tiny", vocab_size=tokenizer.vocab_size,
                                      max_length=24, num_layers=1)
    x, y = tf.constant(encoded.x), tf.constant(encoded.y)
    with tf.GradientTape() as tape:
        logits = model(x)
        tape.watch(logits)
        total, count = token_loss_sum(y, logits)
        loss = total / count
    gradient = np.abs(tape.gradient(loss, logits).numpy()).sum(axis=-1)  # (B, T)
    prompt_length = [len(tokenizer.encode(template.format_prompt(p)).numpy())
                     for p in pairs.prompts]
    for row, n in enumerate(prompt_length):
        assert np.all(gradient[row, :n - 1] == 0.0)  # predicting prompt tokens: no gradient
        assert np.all(gradient[row, n - 1:n + len(pairs.responses[row])] > 0)  # the answer
    assert np.all(gradient[y.numpy() == IGNORE_LABEL] == 0.0)
    # The loss is the mean over response tokens only, by hand.
    log_p = tf.nn.log_softmax(logits).numpy()
    picked = [-log_p[b, t, y[b, t]] for b, t in zip(*np.nonzero(encoded.y >= 0))]
    assert float(loss) == pytest.approx(np.mean(picked), rel=1e-5)
    # Changing the prompts' tokens as targets changes nothing: they are not targets.
    other = encoded.y.copy()
    for row, n in enumerate(prompt_length):
        other[row, :n - 1] = IGNORE_LABEL
    np.testing.assert_array_equal(other, encoded.y)


def one_line_error(argv):
    code, out, err = run_cli(cli.main, argv)
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def bad_files(files, pretrained):
    root = files["root"] / "bad"
    root.mkdir()
    paths = {name: write_lines(root / f"{name}.tsv", lines) for name, lines in {
        "no_tab": ["ham\thello there", "spam hello"],
        "empty_label": ["ham\thello", "\tworld"],
        "empty_text": ["ham\thello", "spam\t  "],
        "one_class": ["ham\thello", "ham\tworld"],
        "unseen": ["ham\thello", "eggs\tworld"],
    }.items()}
    # A copy of the pre-trained run whose tokenizer was replaced by another one.
    other = root / "other-tokenizer"
    shutil.copytree(pretrained, other)
    shutil.rmtree(other / "tokenizer")
    CharTokenizer.train("abc").save(str(other / "tokenizer"))
    paths["other_tokenizer"] = str(other)
    paths["not_a_run"] = str(root)
    return paths


@pytest.mark.parametrize("case, message", [
    ("not_a_run", r"--from: .*config.json' not found: .* is not an llm_tf run directory"),
    ("missing_run", r"--from: Run directory .* does not exist"),
    ("no_tab", r"no_tab.tsv:2: no tab: expected label<TAB>text"),
    ("empty_label", r"empty_label.tsv:2: empty label"),
    ("empty_text", r"empty_text.tsv:2: empty text"),
    ("one_class", r"every line has the label 'ham': a classifier needs examples of at least "
                  r"two classes"),
    ("unseen", r"unseen.tsv:2: label 'eggs' was not seen in training \(the classes are ham, "
               r"spam\)"),
    ("other_tokenizer", r"--from: tokenizer mismatch in .*other-tokenizer"),
    ("frozen_lm", r"--method frozen does not apply to --task lm"),
    ("tokenizer_field", r"--tokenizer cannot be set here: the tokenizer is the pre-trained"),
    ("architecture_field", r"--d_model cannot be set here: the architecture is the "
                           r"pre-trained run's"),
    ("epochs_and_steps", r"--epochs and --steps both set the run's length"),
    ("recompute_with_dropout", r"Recomputing activations \(recompute\) needs dropout 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(files, pretrained, bad_files, tmp_path,
                                               case, message):
    run_dir = tmp_path / "out"
    argv = {"from": pretrained, "task": "classify", "data": files["train"],
            "eval-data": files["test"]}
    extra = []
    if case in ("not_a_run", "other_tokenizer"):
        argv["from"] = bad_files[case]
    elif case == "missing_run":
        argv["from"] = str(tmp_path / "nowhere")
    elif case == "unseen":
        argv["eval-data"] = bad_files[case]
    elif case in bad_files:
        argv["data"] = bad_files[case]
    elif case == "frozen_lm":
        argv.update(task="lm", data=files["corpus"], method="frozen")
        del argv["eval-data"]
    else:
        extra = {"tokenizer_field": ["--tokenizer=byte"], "architecture_field": ["--d_model=64"],
                 "epochs_and_steps": ["--epochs", "2", "--steps=3"],
                 "recompute_with_dropout": ["--recompute=true", "--dropout=0.1"]}[case]
    args = [a for k, v in argv.items() for a in (f"--{k}", v)]
    assert re.search(message, one_line_error([*args, "--run-dir", str(run_dir), *extra]))
    assert not run_dir.exists()  # refused before any directory is made


def test_bad_data_leaves_an_existing_run_untouched(classify_runs, bad_files, files,
                                                   pretrained):
    run_dir, _ = classify_runs["frozen"]
    before = sorted(p.name for p in run_dir.iterdir())
    weights = RunDir(run_dir).weights_file.read_bytes()
    err = one_line_error(["--from", pretrained, "--task", "classify", "--data",
                          bad_files["no_tab"], "--run-dir", str(run_dir), "--overwrite"])
    assert "no tab" in err
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert RunDir(run_dir).weights_file.read_bytes() == weights
