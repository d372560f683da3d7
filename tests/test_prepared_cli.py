"""`llm-tf prepare` and `llm-tf train --data DIR` as a user runs them: exact resume from
prepared data, and bad input (one line, exit code 2)."""

import json
import os

import pytest
from training_util import TINY_CLI, popen_python, run_python, write_corpus

from llm_tf.cli import main
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
