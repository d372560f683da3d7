"""tf.distribute: strategy choice, 2 mirrored CPUs = 1 device, two local workers."""

import json
import os
import socket

import numpy as np
import pytest
from training_util import TINY_CLI, popen_python, python_env, run_python, write_corpus

from llm_tf import saving
from llm_tf.training import distribute


def test_get_strategy_defaults_to_one_device_and_rejects_unknown_kinds(monkeypatch):
    import tensorflow as tf
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    strategy = distribute.get_strategy()
    assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    assert distribute.is_chief(strategy)
    with pytest.raises(ValueError, match="strategy"):
        distribute.get_strategy("horovod")


def test_tf_config_decides_multi_worker_and_the_chief(monkeypatch):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute._cluster_tasks() == 2 and distribute.is_chief_task()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    assert not distribute.is_chief_task()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["h:1"], **cluster},
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute._cluster_tasks() == 3 and not distribute.is_chief_task()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["h:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute._cluster_tasks() == 1 and distribute.is_chief_task()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute._cluster_tasks()


# Logical devices must be configured before TensorFlow initialises: a fresh process.
MIRRORED_VS_ONE_DEVICE = r"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from llm_tf.models import TransformerLM
from llm_tf.training.distribute import get_strategy
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.step import EvalStep, TrainStep
from training_util import random_batches, tiny_configs

model_config, _, train = tiny_configs(steps=12)
keras.utils.set_random_seed(0)
initial = TransformerLM(model_config)
initial.build((None, 32))
# Rows 4..7 (the second replica's half) are mostly padding: per-replica means
# would weigh their few tokens as much as the full rows.
x, y = zip(*random_batches(64, count=12))
y = [tf.concat([t[:4], tf.concat([t[4:, :5], tf.zeros_like(t[4:, 5:])], 1)], 0) for t in y]
data = tf.data.Dataset.from_tensor_slices((tf.stack(x), tf.stack(y)))

def run(strategy, keras_adamw=False):
    with strategy.scope():
        model = TransformerLM(model_config)
        model.build((None, 32))
        model.set_weights(initial.get_weights())
        if keras_adamw:  # an optimizer that sums over the replicas itself: TrainStep hands it g / R
            optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
            optimizer.build(model.trainable_variables)
        else:  # llm_tf's AdamW takes the all-reduced gradients as they are
            optimizer = make_optimizer(train, model.trainable_variables, 32)
        step = TrainStep(model, optimizer, strategy, clip_norm=0.3)  # the clip is active
    batches = iter(strategy.experimental_distribute_dataset(data))
    metrics = [step(batches) for _ in range(12)]
    val = EvalStep(model, strategy)(strategy.experimental_distribute_dataset(data))
    return {"replicas": strategy.num_replicas_in_sync,
            "losses": [float(m["loss"]) for m in metrics],
            "norms": [float(m["grad_norm"]) for m in metrics], "val": val[0],
            "weights": [w.ravel()[:50].tolist() for w in model.get_weights()]}

one_device, mirrored = tf.distribute.get_strategy(), get_strategy("mirrored")
print(json.dumps({"one": run(one_device), "two": run(mirrored),
                  "one_keras": run(one_device, keras_adamw=True),
                  "two_keras": run(mirrored, keras_adamw=True)}))
"""


@pytest.mark.slow
def test_mirrored_on_two_cpus_equals_one_device():
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join([tests_dir, env["PYTHONPATH"]])
    out = run_python(MIRRORED_VS_ONE_DEVICE, env=env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    for one, two in [(result["one"], result["two"]), (result["one_keras"], result["two_keras"])]:
        assert (one["replicas"], two["replicas"]) == (1, 2)
        assert min(one["norms"]) > 0.3  # every step was clipped
        np.testing.assert_allclose(two["losses"], one["losses"], atol=1e-5, rtol=0)
        assert one["losses"][-1] < one["losses"][0]
        assert two["val"] == pytest.approx(one["val"], abs=1e-5)
        for a, b in zip(one["weights"], two["weights"]):
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_with_two_local_workers_trains_and_checkpoints(tmp_path):
    corpus = write_corpus(tmp_path / "text.txt")
    run_dir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    workers = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        env = python_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                               "task": {"type": "worker", "index": index}}),
                         TMPDIR=str(scratch))
        workers.append(popen_python(
            ["-m", "llm_tf.train", "--data", corpus, *TINY_CLI, "--steps=4", "--eval_interval=2",
             "--no-export", "--run-dir", str(run_dir)], env=env))
    outputs = [w.communicate(timeout=1800) for w in workers]  # a guard against a hang only
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, f"{out}\n{err}"
    chief_out = outputs[0][0]
    assert "2 replica(s) (MultiWorkerMirroredStrategy)" in chief_out, chief_out
    assert chief_out.strip().splitlines()[-1].startswith("done: step 4, train loss")
    assert outputs[1][0].strip() == ""  # the other worker prints nothing
    assert [json.loads(line)["step"] for line in
            (run_dir / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert sorted(f for f in os.listdir(run_dir / "checkpoints") if f.endswith(".index")) == \
        ["ckpt-2.index", "ckpt-4.index"]
    assert not os.listdir(tmp_path / "tmp1")  # the worker's scratch copies are gone

    # The chief's checkpoint and weights load on one device.
    import tensorflow as tf

    from llm_tf.training.checkpoints import Checkpoints
    from llm_tf.training.optimizer import make_optimizer
    from llm_tf.training.step import TrainStep
    run = saving.load(run_dir)
    optimizer = make_optimizer(run.config.train, run.model.trainable_variables, 32)
    step = TrainStep(run.model, optimizer, tf.distribute.get_strategy())
    assert Checkpoints(run_dir / "checkpoints", run.model, optimizer, step.step).restore() == 4
