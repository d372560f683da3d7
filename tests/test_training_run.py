"""`run_job`: the one training machine every task uses, and the hooks a task plugs into it."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from training_util import tiny_configs, write_corpus

from llm_tf import saving
from llm_tf.data import TextCorpus, build_lm_data, builtin_text
from llm_tf.rundir import RunConfig, RunDir
from llm_tf.tokenizers import CharTokenizer
from llm_tf.training.reporting import read_metrics
from llm_tf.training.run import lm_job, open_run_dir, run_job

STRATEGY = tf.distribute.get_strategy()


@pytest.fixture(scope="module")
def corpus():
    return TextCorpus(builtin_text()[:30_000], source="builtin[:30000]")


def test_hooks_initialize_new_runs_only_record_task_metrics_and_save(tmp_path, corpus):
    model_config, data_config, train_config = tiny_configs(steps=4)
    tokenizer = CharTokenizer.train(corpus)
    calls = {"initialize": 0, "evaluate": [], "saved": []}

    def make_job():
        job = lm_job(model_config, data_config, train_config, tokenizer, corpus)

        def initialize(model):  # a task's pre-trained weights would be copied in here
            calls["initialize"] += 1
            model.decoder.embedding.token_embedding.embeddings.assign(
                np.full(model.decoder.embedding.embeddings.shape, 0.01, np.float32))

        def evaluate(model):
            calls["evaluate"].append(True)
            return {"accuracy": 0.25 * len(calls["evaluate"])}

        def save_weights(model, path):
            calls["saved"].append(path)
            saving.save_weights(model, path)

        job.initialize, job.evaluate, job.save_weights = initialize, evaluate, save_weights
        return job

    out = io.StringIO()
    path = tmp_path / "run"
    run = run_job(make_job(), open_run_dir(path, STRATEGY, model_config, False, False),
                  stream=out, tty=False, stop_at=2)
    assert calls["initialize"] == 1 and run.result.step == 2
    rows = read_metrics(RunDir(path).metrics_file)
    assert [r["accuracy"] for r in rows] == [0.25]  # one evaluation (eval_interval 2)
    assert {"val_loss", "val_perplexity", "accuracy"} <= set(rows[0])
    assert "accuracy 0.2500" in out.getvalue()
    assert run.result.metrics["accuracy"] == 0.25

    resumed = run_job(make_job(), open_run_dir(path, STRATEGY, model_config, True, False),
                      resume=True, stream=io.StringIO(), tty=False)
    assert calls["initialize"] == 1  # a resumed run restores its checkpoint instead
    assert resumed.result.step == 4 and len(read_metrics(RunDir(path).metrics_file)) == 2
    assert calls["saved"] == [str(RunDir(path).weights_file)] * 2
    assert RunDir(path).read_config().task == "lm"


def test_eval_source_validates_on_another_text_and_trains_on_all_of_the_source(tmp_path):
    source = TextCorpus(builtin_text()[:20_000], source="a")
    held_out = write_corpus(tmp_path / "held_out.txt", chars=3_000)
    _, data_config, _ = tiny_configs()
    tokenizer = CharTokenizer.train(builtin_text()[:40_000])
    data = build_lm_data(data_config.replace(eval_source=held_out), tokenizer, corpus=source)
    stream = tokenizer.encode(source.text).numpy()
    text = builtin_text()[:3_000]
    held = tokenizer.encode(text.rstrip("\n") + "\n").numpy()  # files' lines end in "\n"
    assert data.num_train_tokens == len(stream) and data.num_val_tokens == len(held)
    targets = np.concatenate([y for _, y in data.val.as_numpy_iterator()]).reshape(-1)
    np.testing.assert_array_equal(targets[targets >= 0], held[1:])  # every token once, in order


def test_run_config_records_its_task_and_old_files_are_language_models(tmp_path):
    model_config, data_config, train_config = tiny_configs()
    run_dir = RunDir(tmp_path)
    run_dir.write_config(RunConfig(model_config, data_config, train_config))
    assert json.loads(run_dir.config_file.read_text())["task"] == "lm"
    payload = json.loads(run_dir.config_file.read_text())
    del payload["task"]  # written before tasks existed
    run_dir.config_file.write_text(json.dumps(payload))
    assert run_dir.read_config().task == "lm"
    with pytest.raises(ValueError, match="`task` must be one of 'lm'"):
        RunConfig(model_config, task="poetry")
