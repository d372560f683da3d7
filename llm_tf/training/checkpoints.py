"""Checkpoints that resume a run exactly: the last K, and the best by validation loss.

A checkpoint (`tf.train.Checkpoint`) holds everything the next step depends on:

* the model's variables — weights *and* the dropout layers' `SeedGenerator`
  states, which Keras keeps as (non-trainable) model variables, so dropout
  masks continue where they stopped;
* the optimizer's variables — moments, its iteration counter (which drives
  the learning-rate schedule) and, under mixed float16, the loss scale;
* `step`, the number of updates made; the data pipeline restarts at batch
  `step` (`llm_tf.data` skips that many batches of its deterministic
  stream), so no batch is seen twice or skipped;
* `best_val_loss`, so a resumed run keeps the right "best" checkpoint.

TensorFlow writes a checkpoint's files under temporary names, then renames
them, then rewrites the small `checkpoint` index file atomically: a process
killed mid-save leaves the previous checkpoint as the latest, intact.

Layout under RUN_DIR/checkpoints/: `ckpt-<step>.{index,data-*}` (the last K),
`best/best-<step>.*` (one), and the `checkpoint` index files.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import tensorflow as tf

LATEST_PREFIX = "ckpt"
BEST_DIR = "best"
BEST_PREFIX = "best"


class Checkpoints:
    """Saves and restores a run's training state.

    Args:
        directory: RUN_DIR/checkpoints.
        model, optimizer: the Keras objects being trained (optimizer built).
        step: the int64 step variable of `TrainStep`.
        keep: how many recent checkpoints to keep (besides the best).
        chief: whether this process writes; other workers of a multi-worker
            run take part in each save but write into a temporary directory.
        extra: more trackables to save (e.g. {"iterator": a tf.data iterator}).
    """

    def __init__(self, directory, model, optimizer, step, keep=3, chief=True, extra=None):
        self.directory = os.fspath(directory)
        self.chief = chief
        self.best_val_loss = tf.Variable(math.inf, dtype=tf.float32, trainable=False,
                                         name="best_val_loss")
        self.step = step
        # `model=` alone is not enough with Keras 3: tf.train.Checkpoint follows only
        # attributes it can track, which misses layers kept in Python lists (a stack's
        # `blocks`) and the dropout layers' SeedGenerator states. The list of all the
        # model's variables, in their (deterministic) order, holds every weight and
        # every random state.
        self.checkpoint = tf.train.Checkpoint(model=model, variables=list(model.variables),
                                              optimizer=optimizer, step=step,
                                              best_val_loss=self.best_val_loss,
                                              **(extra or {}))
        self._scratch = None if chief else tempfile.mkdtemp(prefix="llm_tf_worker_ckpt_")
        write_to = self.directory if chief else self._scratch
        self.latest = tf.train.CheckpointManager(self.checkpoint, write_to, max_to_keep=keep,
                                                 checkpoint_name=LATEST_PREFIX)
        self.best = tf.train.CheckpointManager(self.checkpoint, os.path.join(write_to, BEST_DIR),
                                               max_to_keep=1, checkpoint_name=BEST_PREFIX)

    @staticmethod
    def latest_path(directory):
        """Path prefix of the newest checkpoint in `directory`, or None."""
        return tf.train.latest_checkpoint(os.fspath(directory))

    def restore(self, path=None) -> int:
        """Restores the newest checkpoint (or `path`); returns the step it was taken at.

        Every saved value must find its variable (`assert_existing_objects_matched`):
        a checkpoint of another model fails loudly instead of half-loading.
        """
        path = path or self.latest_path(self.directory)
        if path is None:
            raise FileNotFoundError(f"No checkpoint in {self.directory!r} to resume from.")
        status = None
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            if status is not None:
                status.expect_partial()  # no second wall of warnings when the objects die
            reason = str(error).strip().splitlines()[0][:300]
            raise ValueError(f"The checkpoint {path!r} does not fit this model and optimizer "
                             f"(saved from another configuration?): {reason}") from None
        return int(self.step.numpy())

    def save(self, val_loss=None) -> str:
        """Saves a checkpoint named by the step; also as the best if `val_loss` improved."""
        step = int(self.step.numpy())
        improved = val_loss is not None and val_loss < float(self.best_val_loss.numpy())
        if improved:
            self.best_val_loss.assign(val_loss)
        path = self.latest.save(checkpoint_number=step)
        if improved:
            self.best.save(checkpoint_number=step)
        return path

    @property
    def best_path(self):
        return self.latest_path(os.path.join(self.directory, BEST_DIR))

    def close(self):
        """Removes a non-chief worker's scratch directory."""
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
