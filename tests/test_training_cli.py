"""`llm-tf train`: bad input is one line and exit code 2; a run leaves a complete directory."""

import contextlib
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from training_util import TINY_CLI, run_python, write_corpus

from llm_tf import cli as llm_tf_cli
from llm_tf import saving
from llm_tf.commands import train as cli
from llm_tf.commands.overrides import apply_overrides, parse_overrides
from llm_tf.config import DataConfig, ModelConfig, TrainConfig
from llm_tf.rundir import RunConfig, RunDir
from llm_tf.training.reporting import Reporter


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run directory never lands in the checkout


def one_line_error(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "text.txt")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, corpus):
    """A complete 4-step run through the command line, with its stdout."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    argv = ["--data", corpus, *TINY_CLI, "--sample_length=24", "--steps=4", "--eval_interval=2",
            "--no-export", "--run-dir", str(run_dir), "--learning_rate=2e-3"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return run_dir, out.getvalue()


@pytest.mark.parametrize("argv, message", [
    (["--preset", "tinyy"], r"Unknown preset 'tinyy'. Did you mean 'tiny'\?"),
    (["--num_layer=3"], r"unknown option --num_layer. Did you mean --num_layers"),
    (["--learning-rat=1e-3"], r"unknown option --learning_rat. Did you mean --learning_rate"),
    (["--num_layers=six"], r"--num_layers expects an integer. Received: --num_layers='six'"),
    (["--learning_rate", "fast"], r"--learning_rate expects a number"),
    (["--steps", "1.5"], r"--steps expects an integer"),
    (["--tie_embeddings=maybe"], r"--tie_embeddings expects true or false"),
    (["--d_model=130"], r"`d_model` must be divisible by `num_heads`.*d_model=130, num_heads=4"),
    (["--dropout=1.5"], r"`dropout` must be a rate in \[0, 1\)"),
    (["--precision=float8"], r"`precision` must be one of"),
    (["--context_length=128"], r"context_length`=128 is longer than the model's `max_length`=64"),
    (["--resume"], r"--resume needs --run-dir"),
    (["stray"], r"unexpected argument 'stray'"),
    (["--num_layers"], r"--num_layers needs a value"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, argv, message):
    assert re.search(message, one_line_error(capsys, argv))
    assert not os.listdir(tmp_path)  # rejected before any directory is made


def test_run_directory_errors(capsys, tmp_path, finished_run):
    run_dir, _ = finished_run
    err = one_line_error(capsys, ["--resume", "--run-dir", str(tmp_path / "empty")])
    assert "nothing to resume" in err
    (tmp_path / "no-ckpt").mkdir()
    RunDir(tmp_path / "no-ckpt").write_config(RunConfig(RunDir(run_dir).read_config().model))
    assert "no checkpoint" in one_line_error(
        capsys, ["--resume", "--run-dir", str(tmp_path / "no-ckpt")])
    err = one_line_error(capsys, ["--resume", "--run-dir", str(run_dir), "--d_model=64",
                                  "--num_layers=3"])
    assert "d_model: saved 32, asked for 64" in err and "num_layers: saved 2, asked for 3" in err
    err = one_line_error(capsys, ["--resume", "--run-dir", str(run_dir), "--preset", "tiny"])
    assert "d_model: saved 32, asked for 128" in err
    err = one_line_error(capsys, ["--run-dir", str(run_dir)])
    assert "holds a run: pass --resume to continue it, --overwrite" in err
    (tmp_path / "file").write_text("")
    err = one_line_error(capsys, ["--run-dir", str(tmp_path / "file" / "run")])
    assert "not writable" in err


def test_a_run_leaves_everything_needed_to_reproduce_and_reload_it(finished_run):
    run_dir, out = finished_run
    lines = out.strip().splitlines()
    assert re.fullmatch(r"done: step 4, train loss \d\.\d{4}, val loss \d\.\d{4} \(weights in .*\)",
                        lines[-1])
    assert "----- sample at step 4 -----" in out and "step 2: train loss" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["d_model"] == 32 and config["train"]["learning_rate"] == 2e-3
    assert config["data"]["context_length"] == 32
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert {"step", "train_loss", "val_loss", "lr", "tokens_per_sec"} <= set(records[0])
    assert records[1]["val_loss"] < records[0]["val_loss"]
    assert f"val loss {records[1]['val_loss']:.4f}" in lines[-1]
    run = saving.load(run_dir)  # config.json + tokenizer/ + model.weights.h5 only
    ids = run.tokenizer.encode(tf.constant("def f(x):"))[tf.newaxis]
    assert np.isfinite(run.model(ids).numpy()).all()

    events = [f for f in os.listdir(run_dir / "tensorboard") if "tfevents" in f]
    tags = set()
    for record in tf.data.TFRecordDataset(str(run_dir / "tensorboard" / events[0])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        tags.update(v.tag for v in event.summary.value
                    if v.metadata.plugin_data.plugin_name == "scalars")
    assert {"train/loss", "train/learning_rate", "val/loss", "val/perplexity"} <= tags


def test_evaluate_scores_a_language_model_on_a_text_as_one_json_line(finished_run,
                                                                      tmp_path, capsys):
    run_dir, _ = finished_run
    held_out = write_corpus(tmp_path / "held out.txt", chars=2_000)
    assert llm_tf_cli.main(["evaluate", "--run", str(run_dir), "--data", held_out]) == 0
    line = capsys.readouterr().out.strip()
    scores = json.loads(line)
    run = saving.load(run_dir)
    text = open(held_out, encoding="utf-8").read()
    assert scores["tokens"] == len(run.tokenizer.encode(text.rstrip("\n") + "\n"))
    assert scores["perplexity"] == pytest.approx(np.exp(scores["loss"]), rel=1e-6)
    # The same number as the training run's own validation rule on that text.
    from llm_tf.data import load_corpus
    from llm_tf.evaluation import evaluate_language_model
    again = evaluate_language_model(run.model, run.tokenizer, load_corpus(held_out), 32, 8)
    assert scores["loss"] == pytest.approx(again["loss"], rel=1e-6)
    for argv, message in (
            (["--run", str(tmp_path / "nope"), "--data", held_out], "does not exist"),
            (["--run", str(run_dir), "--data", str(tmp_path / "missing.txt")], "missing.txt"),
            (["--run", str(run_dir)], "--data"),
            (["--run", str(run_dir), "--data", held_out, "--batch-size", "0"], "--batch-size")):
        assert llm_tf_cli.main(["evaluate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_resume_extends_a_finished_run_and_exports(finished_run):
    run_dir, _ = finished_run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--resume", "--run-dir", str(run_dir), "--steps=6"]) == 0
    out = out.getvalue()
    assert "resuming at step 4" in out
    assert "changed since the run started: steps: saved 4, asked for 6" in out
    assert "generated by the export" in out and (run_dir / "saved_model").is_dir()
    assert out.strip().splitlines()[-1].startswith("done: step 6, train loss")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert json.loads((run_dir / "config.json").read_text())["train"]["steps"] == 6

    out = io.StringIO()  # nothing left to do: the last evaluation is reported
    with contextlib.redirect_stdout(out):
        assert cli.main(["--resume", "--run-dir", str(run_dir), "--no-export"]) == 0
    assert out.getvalue().strip().splitlines()[-1].startswith(
        f"done: step 6, train loss {records[-1]['train_loss']:.4f}, "
        f"val loss {records[-1]['val_loss']:.4f}")


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(capsys, tmp_path,
                                                                      corpus):
    argv = ["--data", corpus, *TINY_CLI, "--eval_interval=2", "--no-export",
            "--run-dir", str(tmp_path / "run")]
    assert cli.main([*argv, "--steps=2"]) == 0
    capsys.readouterr()
    assert cli.main([*argv, "--resume", "--steps=8", "--learning_rate=1e30"]) == 1
    captured = capsys.readouterr()
    assert re.fullmatch(r"llm-tf: training diverged: the (training|validation) loss is (nan|inf) "
                        r"at step \d; stopped without saving. The last good checkpoint is "
                        r".*ckpt-2: lower --learning_rate .*\n", captured.err)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "best", "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "ckpt-2"))
    assert all(np.isfinite(reader.get_tensor(name)).all()
               for name, dtype in reader.get_variable_to_dtype_map().items() if dtype.is_floating)


def test_overrides_set_every_config_that_has_the_field():
    configs = apply_overrides(
        {"model": ModelConfig(), "data": DataConfig(), "train": TrainConfig()},
        {"seed": "7", "vocab_size": "500", "jit_compile": "yes", "learning_rate": "3e-4"})
    assert configs["data"].seed == configs["train"].seed == 7
    assert configs["model"].vocab_size == configs["data"].vocab_size == 500
    assert configs["train"].jit_compile is True and configs["train"].learning_rate == 3e-4


@pytest.mark.parametrize("argv, expected", [
    ([], True),                                   # the tiny preset compiles its step with XLA
    (["--no-jit-compile"], False),
    (["--jit_compile=false"], False),
    (["--preset", "small"], False),               # XLA slowed `small` down (docs/training.md)
    (["--preset", "small", "--jit-compile"], True),
])
def test_xla_follows_the_preset_unless_the_command_line_says(argv, expected):
    args, rest = cli.build_parser().parse_known_args(argv)
    assert cli.resolve(args, parse_overrides(rest))["train"].jit_compile is expected


def test_python_dash_m_entry_point_prints_help():
    out = run_python(["-m", "llm_tf.train", "--help"]).stdout
    assert "--preset" in out and "num_layers (model: int)" in out
    assert "seed (data/train: int)" in out


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise():
    plain, bar = io.StringIO(), io.StringIO()
    for stream, tty in ((plain, False), (bar, True)):
        reporter = Reporter(None, total_steps=4, stream=stream, tty=tty)
        for step in range(1, 5):
            reporter.progress(step, 2.0, 1e-3, 1000.0, 5.0, log=step % 2 == 0)
        reporter.print("end")
    assert plain.getvalue().splitlines() == [
        "step 2/4: loss 2.0000, lr 1.00e-03, 1,000 tok/s, 5.0 ms/step",
        "step 4/4: loss 2.0000, lr 1.00e-03, 1,000 tok/s, 5.0 ms/step", "end"]
    assert bar.getvalue().count("\r[") == 4 and "ETA" in bar.getvalue()
    assert bar.getvalue().endswith("\nend\n")
