"""What a prepared directory (`llm-tf prepare`) fixes, as the command line enforces it: the
options it makes meaningless are refused instead of ignored, it is never read as text,
`llm-tf evaluate` scores its validation shards, and the run directory stays local."""

import json
import os

import pytest
from training_util import TINY_CLI, write_corpus

from llm_tf.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("options")
    text = write_corpus(tmp / "text.txt", chars=20_000)
    prepared = str(tmp / "data")
    assert main(["prepare", "--data", text, "--out", prepared, "--shards", "2"]) == 0
    return {"text": text, "prepared": prepared, "tmp": tmp}


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("llm-tf: error:") and match in err, err


def test_evaluate_scores_the_validation_shards_as_training_did(corpus, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--data", corpus["prepared"], *TINY_CLI, "--steps=4",
                 "--eval_interval=4", "--no-export", "--no-sample", "--run-dir", run]) == 0
    last = json.loads(open(os.path.join(run, "metrics.jsonl")).read().splitlines()[-1])
    capsys.readouterr()
    assert main(["evaluate", "--run", run, "--data", corpus["prepared"]]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Training's evaluation read the whole validation split (eval_batches 0): the same number.
    assert scores["loss"] == pytest.approx(last["val_loss"], abs=1e-6)
    manifest = json.loads(open(os.path.join(corpus["prepared"], "manifest.json")).read())
    assert scores["tokens"] == manifest["num_val_tokens"]
    # Shards of another tokenizer would be scored as if their ids were this run's.
    byte_data = str(tmp_path / "byte_data")
    assert main(["prepare", "--data", corpus["text"], "--out", byte_data,
                 "--tokenizer", "byte"]) == 0
    _one_line_error(capsys, ["evaluate", "--run", run, "--data", byte_data],
                    "another tokenizer")


@pytest.mark.parametrize("option", [["--tokenizer", "byte"], ["--vocab_size=100"],
                                    ["--val_fraction=0.2"], ["--eval-data", "TEXT"]])
def test_options_that_prepare_fixed_are_refused_before_the_run_directory(
        corpus, tmp_path, capsys, option):
    option = [corpus["text"] if part == "TEXT" else part for part in option]
    run = tmp_path / "run"
    _one_line_error(capsys, ["train", "--data", corpus["prepared"], *option, *TINY_CLI,
                             "--run-dir", str(run)], "is a prepared directory")
    assert not run.exists()


def test_a_prepared_directory_is_never_read_as_text(corpus, tmp_path, capsys):
    prepared = corpus["prepared"]
    for argv in (["prepare", "--data", prepared, "--out", str(tmp_path / "again")],
                 ["prepare", "--data", os.path.join(prepared, "*"),
                  "--out", str(tmp_path / "again")],
                 ["train", "--data", corpus["text"], "--eval-data", prepared, *TINY_CLI,
                  "--tokenizer", "char", "--run-dir", str(tmp_path / "run"), "--no-sample"]):
        _one_line_error(capsys, argv, "its shards are token ids, not text")


def test_tokenizer_from_with_a_tokenizer_to_learn_is_refused(corpus, tmp_path, capsys):
    _one_line_error(capsys, ["train", "--data", corpus["text"], "--tokenizer", "byte",
                             "--tokenizer-from", corpus["prepared"], *TINY_CLI,
                             "--run-dir", str(tmp_path / "run")], "give one or the other")


def test_recompute_with_dropout_is_refused_before_the_run_directory(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    _one_line_error(capsys, ["train", "--data", corpus["prepared"], *TINY_CLI,
                             "--recompute=true", "--dropout=0.1", "--run-dir", str(run)],
                    "needs dropout 0")
    assert not run.exists()


def test_a_remote_run_directory_is_refused_not_written_locally(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["train", "--run-dir", "gs://bucket/run", *TINY_CLI],
                    "must be a local path")
    assert os.listdir(tmp_path) == []


def test_the_library_refuses_evaluation_text_beside_a_prepared_directory(corpus, tmp_path):
    # The command line refuses it before a run directory exists (above); `train()` itself,
    # which remote (gs://) prepared directories reach, refuses it too instead of ignoring it.
    from training_util import tiny_configs

    from llm_tf.data import DataError
    from llm_tf.training import train

    model, data, train_config = tiny_configs()
    data = data.replace(source=corpus["prepared"], eval_source=corpus["text"])
    with pytest.raises(DataError, match="brings its validation shards"):
        train(model, data, train_config, str(tmp_path / "run"))
