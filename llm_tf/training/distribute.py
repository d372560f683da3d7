"""Choosing a `tf.distribute` strategy, and who writes files.

`get_strategy()` looks at the machine, in this order:

1. a TPU address given (`tpu="grpc://..."` or a TPU name, or `TPU_NAME` set)
   -> `TPUStrategy`;
2. `TF_CONFIG` naming more than one task (chief + workers)
   -> `MultiWorkerMirroredStrategy`;
3. TPU devices attached to this host (a TPU VM) -> `TPUStrategy`;
4. several GPUs -> `MirroredStrategy`;
5. otherwise the default strategy (one device; no distribution overhead).

Multi-worker training must create its strategy before any other TensorFlow
op runs, so call `get_strategy()` first thing.

Every worker runs the same program; only the chief writes the run directory.
A collective save (checkpoints, Keras weights) must still be *called* by every
worker, so the others write into a temporary directory that is then removed
(`worker_directory`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def _cluster_tasks() -> int:
    """Number of chief + worker tasks that `TF_CONFIG` names (0 without TF_CONFIG)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError):
        raise ValueError(f"TF_CONFIG is not valid JSON. Received: {raw!r}") from None
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def is_chief_task() -> bool:
    """Whether this process is the chief, from `TF_CONFIG` alone (no TensorFlow call).

    For checks that must run before the strategy exists (multi-worker
    strategies must be created before any other TensorFlow op).
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw or _cluster_tasks() <= 1:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task.get("type") == "chief" or (
        not has_chief and task.get("type") == "worker" and int(task.get("index", 0)) == 0)


def _tpu_strategy(tpu):
    import tensorflow as tf
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    if tpu not in (None, "", "local"):
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(kind: str = "auto", tpu: str | None = None):
    """The strategy for this machine (see the module docstring), or the one `kind` names.

    Args:
        kind: "auto", or force one of "default", "mirrored" (all local GPUs, or
            all logical CPUs if there are no GPUs), "multi_worker", "tpu".
        tpu: TPU address or name; implies "tpu" under "auto".
    """
    import tensorflow as tf
    if kind not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={kind!r}")
    if kind == "auto":
        # TF_CONFIG first: it is read without initialising TensorFlow, which a
        # multi-worker strategy must be created before.
        if tpu or os.environ.get("TPU_NAME"):
            kind = "tpu"
        elif _cluster_tasks() > 1:
            kind = "multi_worker"
        elif tf.config.list_physical_devices("TPU"):
            kind = "tpu"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "tpu":
        return _tpu_strategy(tpu or os.environ.get("TPU_NAME") or "local")
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def strategy_name(strategy) -> str:
    """'MultiWorkerMirroredStrategy', 'MirroredStrategy', 'TPUStrategy' or 'default'."""
    import tensorflow as tf
    for name in ("MultiWorkerMirroredStrategy", "MirroredStrategy", "TPUStrategy"):
        if isinstance(strategy, getattr(tf.distribute, name)):  # (the first is an alias
            return name                                          # of CollectiveAllReduce...)
    return "default"


def is_chief(strategy) -> bool:
    """True on the one task that writes the run directory."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    # With a "chief" task it writes; without one, worker 0 is the chief.
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())


@contextmanager
def worker_directory(path, chief: bool):
    """Yields `path` on the chief; elsewhere a temporary directory, removed afterwards.

    Collective saves must run on every worker (each takes part in the
    all-gather of variables), but only the chief's copy is kept.
    """
    if chief:
        yield str(path)
        return
    temporary = tempfile.mkdtemp(prefix="llm_tf_worker_")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
