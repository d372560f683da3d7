"""`llm-tf prepare` and `llm-tf train --data DIR` as a user runs them: exact resume from
prepared data, and bad input (one line, exit code 2)."""

import json
import os

import pytest
from training_util import TINY_CLI, popen_python, run_python, write_corpus

import llm_tf.tokenizers
from llm_tf.cli import main
from llm_tf.data.prepared import copy_tree
from llm_tf.tokenizers import CharTokenizer

# op determinism must be on before any op runs: a fresh process per run.
DETERMINISTIC_CLI = ("import sys, tensorflow as tf\n"
                     "tf.config.experimental.enable_op_determinism()\n"
                     "from llm_tf.commands.train import main\n"
                     "sys.exit(main(sys.argv[1:]))\n")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prepared")
    corpus = write_corpus(tmp / "text.txt")
    out = str(tmp / "data")
    assert main(["prepare", "--data", corpus, "--out", out, "--shards", "3"]) == 0
    return out


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("llm-tf: error:") and match in err, err


@pytest.mark.slow
def test_exact_resume_from_prepared_data(prepared, tmp_path):
    common = ["-c", DETERMINISTIC_CLI, "--data", prepared, *TINY_CLI, "--steps=6",
              "--eval_interval=2", "--eval_batches=2", "--no-export"]
    straight = popen_python([*common, "--run-dir", str(tmp_path / "straight")])
    first = run_python([*common, "--run-dir", str(tmp_path / "split"), "--stop-at", "2"])
    assert "paused: step 2" in first.stdout and "in 3 + 2 shards" in first.stdout
    resumed = run_python([*common, "--run-dir", str(tmp_path / "split"), "--resume"]).stdout
    out, err = straight.communicate()
    assert straight.returncode == 0, err
    assert "resuming at step 2" in resumed

    def metrics(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: json.loads(line)[k] for k in ("step", "train_loss", "val_loss", "lr")}
                for line in lines]

    assert [m["step"] for m in metrics("straight")] == [2, 4, 6]
    assert metrics("split") == metrics("straight")
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config["data"]["source"] == prepared and config["data"]["tokenizer"] == "char"


def test_bad_prepared_input_is_one_line_and_exit_2(prepared, tmp_path, capsys):
    # A directory with shards but no manifest (an interrupted prepare) is not read as text.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train-00000.bin").write_bytes(b"\0\1" * 100)
    _one_line_error(capsys, ["train", "--data", str(broken), "--run-dir",
                             str(tmp_path / "r1"), "--no-export"], "not a prepared directory")
    # A tokenizer other than the one the shards were made with.
    other = tmp_path / "other_run"
    CharTokenizer.train("xyz").save(str(other / "tokenizer"))
    _one_line_error(capsys, ["train", "--data", prepared, "--tokenizer-from", str(other),
                             "--run-dir", str(tmp_path / "r2"), *TINY_CLI],
                    "another tokenizer")
    # A truncated shard.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in os.listdir(prepared):
        if name != "tokenizer":
            (copy / name).write_bytes(open(os.path.join(prepared, name), "rb").read())
    shard = sorted(copy.glob("train-*.bin"))[0]
    shard.write_bytes(shard.read_bytes()[:-3])
    _one_line_error(capsys, ["train", "--data", str(copy), "--run-dir", str(tmp_path / "r3"),
                             *TINY_CLI], "truncated")
    # prepare: a non-empty --out, and a --tokenizer-from without a tokenizer.
    _one_line_error(capsys, ["prepare", "--data", "builtin", "--out", prepared], "not empty")
    _one_line_error(capsys, ["prepare", "--data", "builtin", "--out", str(tmp_path / "o"),
                             "--tokenizer-from", str(tmp_path)], "holds no tokenizer")


def test_damaged_prepared_directory_or_run_directory_as_data_is_one_line(prepared, tmp_path,
                                                                        capsys):
    # A prepared directory whose tokenizer/ was deleted: refused when opened, in words.
    copy = tmp_path / "no_tokenizer"
    copy.mkdir()
    for name in os.listdir(prepared):
        if name != "tokenizer":
            (copy / name).write_bytes(open(os.path.join(prepared, name), "rb").read())
    _one_line_error(capsys, ["train", "--data", str(copy), "--run-dir", str(tmp_path / "r1"),
                             *TINY_CLI], "has no tokenizer")
    # A run directory is not "an interrupted prepare": the message says what to do with one.
    run = tmp_path / "run"
    CharTokenizer.train("xyz").save(str(run / "tokenizer"))
    (run / "config.json").write_text("{}")
    _one_line_error(capsys, ["train", "--data", str(run), "--run-dir", str(tmp_path / "r2"),
                             *TINY_CLI], f"is a run directory (it has config.json), which "
                             f"--data does not take: give a corpus or a prepared directory; "
                             f"reuse the run's tokenizer with --tokenizer-from {run}")


def test_prepare_checks_out_before_learning_a_tokenizer(prepared, tmp_path, monkeypatch,
                                                         capsys):
    def no_learning(*args, **kwargs):
        raise AssertionError("the tokenizer was learned before --out was checked")

    monkeypatch.setattr(llm_tf.tokenizers, "train_tokenizer", no_learning)
    corpus = os.path.join(os.path.dirname(prepared), "text.txt")
    _one_line_error(capsys, ["prepare", "--data", corpus, "--tokenizer", "wordpiece",
                             "--out", prepared], "is not empty")
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    _one_line_error(capsys, ["prepare", "--data", corpus, "--out", str(a_file)], "is a file")
    assert a_file.read_text() == "mine"
    # TensorFlow's own filesystem errors are one line too (the unknown scheme is named).
    _one_line_error(capsys, ["prepare", "--data", corpus, "--out", "nosuchfs://bucket/data"],
                    "File system scheme 'nosuchfs' not implemented")


def test_prepare_takes_the_tokenizer_of_a_remote_run(prepared, tmp_path, capsys):
    """--tokenizer-from gs://... was refused by a local isfile check; ram:// stands in."""
    tokenizer = CharTokenizer.train(open(os.path.join(os.path.dirname(prepared),
                                                      "text.txt"), encoding="utf-8").read())
    tokenizer.save(str(tmp_path / "tokenizer"))
    copy_tree(str(tmp_path / "tokenizer"), "ram://remote_run/tokenizer")
    out = str(tmp_path / "data")
    assert main(["prepare", "--data", os.path.join(os.path.dirname(prepared), "text.txt"),
                 "--tokenizer-from", "ram://remote_run", "--out", out]) == 0, \
        capsys.readouterr().err
    assert "from ram://remote_run" in capsys.readouterr().out
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["tokenizer"]["vocab_size"] == tokenizer.vocab_size
    _one_line_error(capsys, ["prepare", "--data", "builtin", "--out", str(tmp_path / "o"),
                             "--tokenizer-from", "ram://nothing_here"], "holds no tokenizer")
