"""The translation task end to end: pairs -> `llm-tf train --task translation` -> evaluate
(BLEU, chrF), translate, export (a fresh process without llm_tf), bad input, kill -9 + resume."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import sacrebleu
import tensorflow as tf
from training_util import popen_python, run_python

import llm_tf
from llm_tf import cli
from llm_tf.data import DataError, build_pair_batches, load_pairs, split_pairs
from llm_tf.data.pairs import SentencePairs
from llm_tf.evaluation import translation_scores
from llm_tf.generation.translator import Translator
from llm_tf.models import Transformer
from llm_tf.rundir import RunDir
from llm_tf.tokenizers import BOS_ID, EOS_ID, IGNORE_LABEL, PAD_ID, train_tokenizer
from llm_tf.training.reporting import read_metrics

# A made-up language pair: word-for-word, so a tiny model has something to learn.
LEXICON = {"ein": "a", "der": "the", "hund": "dog", "katze": "cat", "sieht": "sees",
           "liebt": "loves", "kleine": "small", "große": "big", "und": "and", "nicht": "not"}


def make_pairs(count, seed):
    rng = random.Random(seed)
    words = sorted(LEXICON)
    pairs = []
    for _ in range(count):
        sentence = [rng.choice(words) for _ in range(rng.randint(2, 6))]
        pairs.append((" ".join(sentence).capitalize() + ".",
                      " ".join(LEXICON[w] for w in sentence).capitalize() + "."))
    return pairs


def write_pairs(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return str(path)


# The train step uncompiled: XLA would compile each bucket shape in every process (seconds each).
TINY = ["--d_model=32", "--num_heads=2", "--num_layers=1", "--dff=64", "--max_length=32",
        "--context_length=32", "--batch_size=8", "--vocab_size=300", "--warmup_steps=2",
        "--log_interval=3", "--no-jit-compile"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny translator trained by `llm-tf train --task translation` (6 steps), exported."""
    folder = tmp_path_factory.mktemp("translation")
    train = write_pairs(folder / "train.tsv", make_pairs(300, 0))
    test = write_pairs(folder / "test.tsv", make_pairs(12, 1))
    run_dir = folder / "run"
    argv = ["train", "--task", "translation", "--data", train, "--eval-data", test,
            "--run-dir", str(run_dir), *TINY, "--steps=6", "--eval_interval=6"]
    return folder, run_dir, test, argv


@pytest.fixture(scope="module")
def train_output(trained, tmp_path_factory):
    import contextlib
    import io
    _, _, _, argv = trained
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return out.getvalue()


def test_training_writes_a_translation_run_and_exports_it(trained, train_output):
    _, run_dir, _, _ = trained
    counts = re.search(r"(\d+) training pairs(?: \((\d+) longer than 32 tokens left out\))? / "
                       r"12 validation pairs", train_output)
    assert counts and int(counts[1]) + int(counts[2] or 0) == 300, train_output[:500]
    assert "translations at step 6" in train_output and "(reference: " in train_output
    assert "translated by the export (beam 4)" in train_output
    assert train_output.strip().splitlines()[-1].startswith("done: step 6, train loss")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "translation" and config["train"]["label_smoothing"] == 0.1
    record = read_metrics(RunDir(run_dir).metrics_file)[-1]
    assert record["step"] == 6
    assert 0 <= record["val_bleu"] <= 100 and 0 <= record["val_chrf"] <= 100
    run = llm_tf.load(run_dir)
    assert isinstance(run.model, Transformer) and run.config.task == "translation"
    assert run.model.config == run.config.model
    # One table for source, target and output (the preset ties them): V·D parameters once.
    tables = [w for w in run.model.weights if "token_embedding" in w.path]
    assert len(tables) == 1 and run.model.final_dense is None
    assert run.tokenizer.vocab_size == run.config.model.vocab_size


def test_evaluate_prints_bleu_and_chrf_and_writes_the_hypotheses(trained, train_output, capsys):
    _, run_dir, test, _ = trained
    assert cli.main(["evaluate", "--run", str(run_dir), "--data", test, "--beam-size", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    scores = json.loads(out[0])
    assert scores["sentences"] == 12 and scores["beam_size"] == 2
    hypotheses = open(scores["hypotheses"], encoding="utf-8").read().split("\n")[:-1]
    references = list(load_pairs(test).targets)
    assert len(hypotheses) == 12
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def test_scores_are_sacrebleus_corpus_scores():
    references = ["The cat sees the dog.", "A small dog."]
    assert translation_scores(references, references) == {"bleu": pytest.approx(100.0),
                                                          "chrf": pytest.approx(100.0)}
    hypotheses = ["The cat sees a dog.", "A big dog."]
    scores = translation_scores(hypotheses, references)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert 0 < scores["bleu"] < 100 and 0 < scores["chrf"] < 100


FRESH_PROCESS = textwrap.dedent("""
    import importlib.abc, json, sys

    class RefuseLlmTf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "llm_tf" or name.startswith("llm_tf."):
                raise ImportError("the SavedModel must not need llm_tf: " + name)

    sys.meta_path.insert(0, RefuseLlmTf())
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (SentencePiece ops: the README asset says so)

    directory, sources = json.loads(sys.argv[1])
    translator = tf.saved_model.load(directory)
    out = {}
    for beam in (1, 3):
        texts = translator.signatures["translate"](
            sources=tf.constant(sources), beam_size=tf.constant(beam),
            length_penalty=tf.constant(0.6))["translations"]
        out[beam] = [t.decode("utf-8") for t in texts.numpy()]
    out["llm_tf_imported"] = any(m.startswith("llm_tf") for m in sys.modules)
    print(json.dumps(out))
""")


def test_the_export_translates_like_the_model_in_a_process_without_llm_tf(trained, train_output,
                                                                          tmp_path):
    _, run_dir, test, _ = trained
    sources = list(load_pairs(test).sources)[:5]
    run = llm_tf.load(run_dir)
    translator = Translator(run.model, run.tokenizer, batch_size=8)
    expected = {beam: translator.translate(sources, beam_size=beam) for beam in (1, 3)}
    argument = json.dumps([str(run_dir / "saved_model"), sources])
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, argument], cwd=tmp_path,
                            env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh["llm_tf_imported"] is False
    assert fresh["1"] == expected[1] and fresh["3"] == expected[3]
    readme = (run_dir / "saved_model" / "assets" / "README.txt").read_text(encoding="utf-8")
    assert "import tensorflow_text" in readme and '"sentencepiece"' in readme


def test_llm_tf_translate_from_the_run_and_from_the_saved_model(trained, train_output, capsys):
    _, run_dir, test, _ = trained
    sources = list(load_pairs(test).sources)[:3]
    assert cli.main(["translate", "--run", str(run_dir), "--beam-size", "3", *sources]) == 0
    from_run = capsys.readouterr().out.splitlines()
    assert cli.main(["translate", "--saved-model", str(run_dir / "saved_model"),
                     "--beam-size", "3", *sources]) == 0
    assert capsys.readouterr().out.splitlines() == from_run and len(from_run) == 3


BAD_TRAINING_FILES = {
    "no tab": ("Ein Hund.\tA dog.\nEine Katze. A cat.\n", r"line 2 has no tab"),
    "two tabs": ("Ein Hund.\tA dog.\tx\n", r"line 1 has 2 tabs"),
    "empty target": ("Ein Hund.\tA dog.\nEine Katze.\t  \n", r"line 2: the target .* is empty"),
    "empty source": ("\tA dog.\n", r"line 1: the source .* is empty"),
    "one pair": ("Ein Hund.\tA dog.\n", r"hold 1 pair\(s\); at least 2"),
}


@pytest.mark.parametrize("case", BAD_TRAINING_FILES)
def test_bad_training_pairs_are_one_line_and_exit_code_2(case, tmp_path, capsys):
    text, message = BAD_TRAINING_FILES[case]
    (tmp_path / "pairs.tsv").write_text(text, encoding="utf-8")
    assert cli.main(["train", "--task", "translation", "--data", str(tmp_path / "pairs.tsv"),
                     "--run-dir", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-tf: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--run", "RUN", "--data", "PLAIN"], r"line 1 has no tab"),
    (["evaluate", "--run", "RUN", "--data", "TEST", "--beam-size", "0"],
     r"--beam-size must be >= 1"),
    (["evaluate", "--run", "RUN", "--data", "TEST", "--length-penalty", "-1"],
     r"--length-penalty must be >= 0"),
    (["translate", "--run", "RUN", "--beam-size", "0", "Hallo."], r"--beam-size must be >= 1"),
    (["translate", "--saved-model", "RUN", "Hallo."], r"not a SavedModel directory"),
    (["train", "--task", "translation", "--run-dir", "NEW"], r"needs --data PAIRS"),
    (["train", "--task", "translation", "--preset", "tiny", "--run-dir", "NEW"],
     r"--preset tiny is a 'lm' preset"),
])
def test_bad_command_lines_are_one_line_and_exit_code_2(trained, argv, message, tmp_path, capsys):
    folder, run_dir, test, _ = trained
    (tmp_path / "plain.txt").write_text("Just some text.\nNo pairs here.\n", encoding="utf-8")
    names = {"RUN": str(run_dir), "TEST": test, "PLAIN": str(tmp_path / "plain.txt"),
             "NEW": str(tmp_path / "new")}
    assert cli.main([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-tf: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err


# -- the data ---------------------------------------------------------------------------------

def test_pairs_are_read_in_order_from_files_directories_and_globs(tmp_path):
    (tmp_path / "d").mkdir()
    write_pairs(tmp_path / "d" / "a.tsv", [("Eins.", "One.")])
    (tmp_path / "d" / "b.tsv").write_bytes("Zwei.\tTwo.\r\n\nDrei.\tThree.\n".encode())
    for source in (str(tmp_path / "d"), str(tmp_path / "d" / "*.tsv")):
        pairs = load_pairs(source)
        assert list(pairs) == [("Eins.", "One."), ("Zwei.", "Two."), ("Drei.", "Three.")]
    train, val = split_pairs(load_pairs(str(tmp_path / "d")), 0.3, seed=1)
    assert len(train) == 2 and len(val) == 1
    assert sorted(list(train) + list(val)) == sorted(load_pairs(str(tmp_path / "d")))
    (tmp_path / "bad.tsv").write_bytes(b"Eins.\tOne.\nZw\xffei.\tTwo.\n")
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_pairs(str(tmp_path / "bad.tsv"))


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("char", "".join(s + t for s, t in make_pairs(200, 0)))


def test_bucketed_batches_pad_little_ignore_padding_and_resume_exactly(tokenizer):
    pairs = SentencePairs.from_list(make_pairs(200, 0) + [("x " * 40, "y")])
    data = build_pair_batches(tokenizer, pairs, None, context_length=48, batch_size=4,
                              seed=3)
    assert data.bucket_lengths == (12, 24, 36, 48) and data.batch_sizes[:3] == (16, 8, 5)
    assert data.num_too_long == 1 and data.num_train == 200
    batches = [tuple(t.numpy() for t in (x[0], x[1], y))
               for x, y in data.train.take(3 * data.steps_per_epoch)]
    seen, slots, labels = set(), 0, 0
    for source, target_in, target_out in batches:
        assert source.shape == target_in.shape == target_out.shape
        assert source.shape[1] in data.bucket_lengths
        # Teacher forcing; padded labels are IGNORE_LABEL, padded inputs PAD.
        assert (target_in[:, 0] == BOS_ID).all()
        real = target_out != IGNORE_LABEL
        np.testing.assert_array_equal(target_out[:, :-1][real[:, :-1] & (target_in[:, 1:] !=
                                                                            PAD_ID)],
                                      target_in[:, 1:][real[:, :-1] & (target_in[:, 1:] !=
                                                                       PAD_ID)])
        assert ((target_out == EOS_ID).sum(axis=1) == 1).all()
        assert (target_in[~real] == PAD_ID).all()
        seen.update(map(bytes, source))
        slots += target_out.size
        labels += real.sum()
    assert len(seen) >= 190  # three epochs cover (nearly) every pair
    assert labels / slots > 0.6  # padding does not dominate (one shape for all: ~0.45)
    k = data.steps_per_epoch + 2  # into the second epoch
    resumed = build_pair_batches(tokenizer, pairs, None, 48, 4, seed=3, start_step=k)
    for expected, (x, y) in zip(batches[k:k + 5], resumed.train.take(5)):
        for a, b in zip(expected, (x[0], x[1], y)):
            np.testing.assert_array_equal(a, b.numpy())


def test_validation_batches_score_every_pair_once(tokenizer):
    pairs = SentencePairs.from_list(make_pairs(50, 2))
    data = build_pair_batches(tokenizer, pairs, pairs, context_length=48, batch_size=4, seed=0)
    targets = [y.numpy() for _, y in data.val]
    assert sum(len(y) for y in targets) == 50
    assert sum(int((y == EOS_ID).sum()) for y in targets) == 50


# -- exact resume, and resume after kill -9 ---------------------------------------------------

# op determinism must be on before any op runs: a fresh process per run.
DETERMINISTIC_TRAIN = ("import sys, tensorflow as tf\n"
                       "tf.config.experimental.enable_op_determinism()\n"
                       "from llm_tf.commands.train import main\n"
                       "sys.exit(main(sys.argv[1:]))\n")


def finish(process):
    out, err = process.communicate()
    assert process.returncode == 0, f"{out}\n{err}"
    return out


@pytest.mark.slow
def test_stopped_at_step_k_then_resumed_equals_the_uninterrupted_run(tmp_path):
    train = write_pairs(tmp_path / "train.tsv", make_pairs(200, 0))
    common = ["-c", DETERMINISTIC_TRAIN, "--task", "translation", "--data", train, *TINY,
              "--tokenizer", "char", "--dropout=0.1", "--steps=8", "--eval_interval=4",
              "--no-sample", "--no-export"]
    straight = popen_python([*common, "--run-dir", str(tmp_path / "straight")])
    first = popen_python([*common, "--run-dir", str(tmp_path / "split"), "--stop-at", "4"])
    assert "paused: step 4" in finish(first)
    resumed = run_python([*common, "--run-dir", str(tmp_path / "split"), "--resume"]).stdout
    finish(straight)
    assert "resuming at step 4" in resumed

    def metrics(run):
        return [{k: r.get(k) for k in ("step", "train_loss", "val_loss", "val_bleu", "lr")}
                for r in read_metrics(RunDir(tmp_path / run).metrics_file)]

    assert [m["step"] for m in metrics("straight")] == [4, 8]
    assert metrics("straight")[-1]["val_loss"] is not None
    assert metrics("split") == metrics("straight")  # bit for bit, dropout and buckets included
    a, b = (llm_tf.load(tmp_path / run).model.get_weights() for run in ("straight", "split"))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def latest_step(run_dir):
    path = tf.train.latest_checkpoint(RunDir(run_dir).checkpoint_dir)
    return None if path is None else int(path.rsplit("-", 1)[1])


@pytest.mark.slow
def test_kill_9_then_resume_continues_from_the_last_checkpoint(tmp_path):
    train = write_pairs(tmp_path / "train.tsv", make_pairs(200, 0))
    run_dir = tmp_path / "run"
    args = ["-m", "llm_tf.train", "--task", "translation", "--data", train, *TINY,
            "--tokenizer", "char", "--steps=100000", "--eval_interval=2", "--no-sample",
            "--no-export", "--run-dir", str(run_dir)]
    victim = popen_python(args)
    try:
        while (latest_step(run_dir) or 0) < 4:
            assert victim.poll() is None, victim.communicate()
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.3))
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.communicate()
    step = latest_step(run_dir)
    assert step % 2 == 0 and step >= 4
    resumed = run_python([*args, "--resume", f"--steps={step + 2}"]).stdout
    assert f"resuming at step {step} " in resumed
    assert resumed.strip().splitlines()[-1].startswith(f"done: step {step + 2}, train loss")
    assert [r["step"] for r in read_metrics(RunDir(run_dir).metrics_file)] == \
        list(range(2, step + 3, 2))
