"""What a run tells the world: the terminal, `metrics.jsonl` and TensorBoard.

* On a terminal, a progress line redrawn in place (step, loss, lr, tokens/s,
  ms/step, ETA); when stdout is not a TTY (a log file, CI), one plain line per
  `log_interval` steps instead.
* `metrics.jsonl`: one JSON object per evaluation, appended and flushed:
  `step`, `train_loss` (mean over the steps since the previous evaluation),
  `val_loss`, `val_perplexity`, the task's own metrics if any (e.g. `accuracy`),
  `lr`, `tokens_per_sec`, `elapsed_sec`.
* TensorBoard scalars (`tf.summary`) in RUN_DIR/tensorboard: the same
  values, plus `grad_norm` and `step_ms`, every `log_interval` steps.

Only the chief reports; other workers get `Reporter(..., chief=False)`, which
is silent.
"""

from __future__ import annotations

import json
import math
import os
import sys

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from llm_tf.rundir import RunDir

# `tf.summary.scalar` lives in the `tensorboard` package, which TensorFlow no
# longer installs; `tf.summary.write` with the scalar plugin's metadata writes
# the very same event records with TensorFlow alone.
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def write_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar in the default summary writer."""
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=_SCALAR)


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Reporter:
    """Prints progress and records metrics for one run.

    Args:
        run_dir: the `RunDir` whose `metrics.jsonl` and `tensorboard/` receive the
            records; None records nothing.
        total_steps: the step the run ends at (for the progress bar and ETA).
        chief: False makes every method a no-op (non-chief workers).
        stream: where to print (default stdout).
        tty: force the progress bar on/off (default: `stream.isatty()`).
    """

    def __init__(self, run_dir: RunDir | None, total_steps, chief=True, stream=None, tty=None):
        self.chief = chief
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.run_dir = run_dir
        self._writer = None
        self._bar_open = False
        if chief and run_dir is not None:
            self._writer = tf.summary.create_file_writer(str(run_dir.tensorboard_dir))

    # -- terminal -----------------------------------------------------------

    def print(self, text: str = ""):
        """A line of text (closes an open progress bar first)."""
        if not self.chief:
            return
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, step, loss, lr, tokens_per_sec, step_ms, grad_norm=None,
                 elapsed=None, log=True):
        """Called every step on a terminal (redraws the bar), else only when `log` is true."""
        if not self.chief:
            return
        text = (f"step {step}/{self.total_steps}: loss {loss:.4f}, lr {lr:.2e}, "
                f"{tokens_per_sec:,.0f} tok/s, {step_ms:.1f} ms/step")
        if self.tty:
            remaining = (self.total_steps - step) * step_ms / 1000
            done = step / max(self.total_steps, 1)
            bar = "#" * int(24 * done) + "." * (24 - int(24 * done))
            self.stream.write(f"\r[{bar}] {text}, ETA {_fmt_time(remaining)}\x1b[K")
            self.stream.flush()
            self._bar_open = True
        elif log:
            self.print(text)
        if log and self._writer is not None:
            with self._writer.as_default():
                write_scalar("train/loss", loss, step)
                write_scalar("train/learning_rate", lr, step)
                write_scalar("train/tokens_per_sec", tokens_per_sec, step)
                write_scalar("train/step_ms", step_ms, step)
                if grad_norm is not None:
                    write_scalar("train/grad_norm", grad_norm, step)

    # -- evaluations ----------------------------------------------------------

    def evaluation(self, step, train_loss, metrics: dict, lr, tokens_per_sec, elapsed):
        """Appends one line to metrics.jsonl, writes TensorBoard scalars, prints a summary.

        Args:
            metrics: what the evaluation measured: "val_loss", "val_perplexity" (absent
                without validation data) and any task metrics ("accuracy", ...).
        """
        if not self.chief:
            return
        record = {"step": int(step), "train_loss": _finite_or_none(train_loss),
                  "val_loss": None, "val_perplexity": None,
                  **{name: _finite_or_none(value) for name, value in metrics.items()},
                  "lr": float(lr), "tokens_per_sec": round(float(tokens_per_sec), 1),
                  "elapsed_sec": round(float(elapsed), 2)}
        if self.run_dir is not None:
            with open(self.run_dir.metrics_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            with self._writer.as_default():
                for name, value in metrics.items():
                    if value is not None:
                        write_scalar(_tensorboard_name(name), value, step)
            self._writer.flush()
        parts = [f"step {step}: train loss "
                 + ("n/a" if train_loss is None else f"{train_loss:.4f}")]
        val_loss, perplexity = metrics.get("val_loss"), metrics.get("val_perplexity")
        if val_loss is not None:
            parts.append(f"val loss {val_loss:.4f} (perplexity {perplexity:.2f})")
        parts += [f"{name} {value:.4f}" for name, value in metrics.items()
                  if name not in ("val_loss", "val_perplexity") and value is not None]
        self.print(", ".join(parts) + f", {_fmt_time(elapsed)} elapsed")

    def close(self):
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tensorboard_name(metric: str) -> str:
    """"val_loss" -> "val/loss"; a task metric such as "accuracy" -> "val/accuracy"."""
    return "val/" + (metric[len("val_"):] if metric.startswith("val_") else metric)


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def drop_metrics_after(path, step: int) -> None:
    """Removes records newer than `step` from the metrics file at `path` (rewritten atomically).

    A run killed after recording an evaluation but before its checkpoint was
    complete resumes from the previous checkpoint and records that step again.
    """
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        original = f.read()
    kept = "".join(json.dumps(r) + "\n" for r in read_metrics(path) if r.get("step", 0) <= step)
    if kept != original:  # also mends a last line cut short by a kill
        temporary = os.fspath(path) + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(kept)
        os.replace(temporary, path)


def read_metrics(path) -> list[dict]:
    """The records of a metrics file (`RunDir.metrics_file`), oldest first ([] if none)."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:  # a line cut short by a kill
                pass
    return records
