"""The training loop: a plain `while` over steps, readable top to bottom.

    while step < steps:
        n = steps to the next log, evaluation or pause (at most `steps_per_call`; 1 at first)
        metrics = train_step.run(batches, n)   # n updates in one compiled call
        stop if a loss is NaN or Inf           # the last checkpoint stays the last good one
        log every `log_interval` steps         # loss, learning rate, tokens/s, ms/step
        every `eval_interval` steps and at the end:
            evaluate on the validation split, record, checkpoint, print a sample

Everything else (model, data, strategy, run directory) is prepared by
`llm_tf.training.run.train`; this module only drives the steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional

from llm_tf.config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the run stopped without saving the bad state."""


@dataclasses.dataclass
class LoopResult:
    """How a run ended.

    Attributes:
        step: updates made in total (including those before a resume).
        train_loss: mean training loss over the last evaluation interval.
        val_loss: validation loss at the last evaluation (None without validation data).
        metrics: everything the last evaluation measured ({"val_loss": ..., "val_perplexity":
            ..., and task metrics such as "accuracy"}); {} without validation data.
        best_val_loss: lowest validation loss seen in the run.
        steps_run: updates made by this call (0 if the run was already complete).
        seconds: wall time of this call's steps, evaluations excluded.
        tokens_per_sec: training throughput of this call, compilation excluded.
    """

    step: int
    train_loss: Optional[float]
    val_loss: Optional[float]
    best_val_loss: Optional[float]
    steps_run: int
    seconds: float
    tokens_per_sec: float
    metrics: dict = dataclasses.field(default_factory=dict)


def _diverged(which, loss, step, checkpoints) -> TrainingDiverged:
    last = checkpoints.latest_path(checkpoints.directory) if checkpoints else None
    return TrainingDiverged(
        f"the {which} loss is {loss} at step {step}; stopped without saving. "
        + (f"The last good checkpoint is {last}: " if last else "No checkpoint was saved yet: ")
        + "lower --learning_rate or raise --warmup_steps, then --resume.")


def _next_multiple(step: int, interval: int) -> int:
    return (step // interval + 1) * interval


def run_loop(train_step, batches, train: TrainConfig, tokens_per_step: int,
             evaluate: Optional[Callable[[], tuple]] = None, checkpoints=None, reporter=None,
             sample: Optional[Callable[[int], str]] = None,
             stop_at: Optional[int] = None) -> LoopResult:
    """Trains from `train_step.step` up to `train.steps` (or `stop_at`, if sooner).

    Args:
        train_step: a `TrainStep` (`run(batches, n)` makes n updates and returns their
            losses; has `.step`).
        batches: the (distributed) iterator of training batches, positioned at
            the current step.
        train: cadence (`steps`, `log_interval`, `eval_interval`, `steps_per_call`).
        tokens_per_step: tokens in one global batch (B · T), for tokens/s.
        evaluate: () -> {"val_loss": ..., "val_perplexity": ..., task metrics...}, or None.
        checkpoints: a `Checkpoints`, or None to save nothing.
        reporter: a `Reporter`, or None to print nothing.
        sample: step -> text printed after each evaluation, or None.
        stop_at: pause the run after this step (checkpointed, to be resumed
            later): a session's budget on a shared or preemptible machine.
            The schedule still runs to `train.steps`.

    Raises:
        TrainingDiverged: on a NaN or Inf loss (nothing is saved for that step).
    """
    step = int(train_step.step.numpy())
    start_step = step
    window_losses: list[float] = []  # training losses since the last evaluation
    val_loss, last_train_loss, metrics_seen = None, None, {}
    train_time = 0.0          # seconds spent in steps after the first (compiled) one
    timed_steps = 0
    log_time, log_steps = 0.0, 0
    last_step = train.steps if stop_at is None else min(stop_at, train.steps)
    while step < last_step:
        # Up to the next step that logs, evaluates or pauses: the host reads the losses there.
        boundary = min(last_step, _next_multiple(step, train.log_interval),
                       _next_multiple(step, train.eval_interval))
        n = 1 if step == start_step else min(train.steps_per_call, boundary - step)
        started = time.perf_counter()
        metrics = train_step.run(batches, n)
        losses = [float(v) for v in metrics["losses"].numpy()]  # waits for the n steps
        seconds = time.perf_counter() - started
        for i, loss in enumerate(losses):  # NaN is detected at the step it happened
            if not math.isfinite(loss):
                raise _diverged("training", loss, step + i + 1, checkpoints)
        step += n
        loss = losses[-1]
        window_losses += losses
        if step == start_step + 1:  # tracing and compiling: not part of the throughput
            if reporter:
                reporter.print(f"step {step}: compiled and ran the first step in {seconds:.1f} s")
        else:
            train_time += seconds
            timed_steps += n
            log_time += seconds
            log_steps += n
        log = step % train.log_interval == 0 or step == last_step
        if reporter and log_steps and (log or reporter.tty):
            reporter.progress(step, loss, float(metrics["learning_rate"]),
                              tokens_per_step * log_steps / max(log_time, 1e-9),
                              1000 * log_time / log_steps,
                              grad_norm=float(metrics["grad_norm"]), log=log)
            if log:
                log_time, log_steps = 0.0, 0

        if step % train.eval_interval == 0 or step == train.steps:
            metrics_seen = evaluate() if evaluate else {}
            val_loss = metrics_seen.get("val_loss")
            if val_loss is not None and not math.isfinite(val_loss):
                raise _diverged("validation", val_loss, step, checkpoints)
            train_loss = sum(window_losses) / len(window_losses)
            if reporter:  # (a resume drops records newer than its checkpoint)
                reporter.evaluation(step, train_loss, metrics_seen,
                                    float(metrics["learning_rate"]),
                                    tokens_per_step * timed_steps / max(train_time, 1e-9),
                                    train_time)
            if checkpoints:
                checkpoints.save(val_loss)
            if reporter and sample:
                reporter.print(sample(step))
            window_losses = []
            last_train_loss = train_loss
        elif step == last_step and checkpoints:  # paused between evaluations
            checkpoints.save()

    best = None
    if checkpoints is not None and math.isfinite(float(checkpoints.best_val_loss.numpy())):
        best = float(checkpoints.best_val_loss.numpy())
    return LoopResult(step=step, train_loss=last_train_loss, val_loss=val_loss,
                      best_val_loss=best, steps_run=step - start_step, seconds=train_time,
                      tokens_per_sec=tokens_per_step * timed_steps / max(train_time, 1e-9),
                      metrics=metrics_seen)
