"""One training loop for every objective.

The objective returns its losses, its parameter groups and its per-step hooks (see
:mod:`dssl.objectives.base`); the engine does the rest: AdamW with per-group learning-rate and
weight-decay scales, cosine schedules with warm-up (DINO's), gradient clipping, autocast on CUDA,
a guard against non-finite losses, periodic metrics and checkpoints, progress display.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from dssl.config import OptimConfig
from dssl.engine.distributed import all_reduce_gradients, any_rank, mean_over_ranks
from dssl.engine.distributed import context as distributed_context
from dssl.errors import PreemptedError, RunFailedError
from dssl.layers.schedules import cosine_schedule

if TYPE_CHECKING:
    from dssl.engine.profiling import StepProfiler

#: Version of the layout of :meth:`Trainer.state_dict` (``checkpoints/last.pt``).
CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RunFailedError):
    """The loss became NaN or infinite; the run stops and is marked FAILED."""


@dataclass
class TrainingSummary:
    steps: int
    seconds: float
    images_per_second: float
    final_metrics: dict[str, float] = field(default_factory=dict)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        # Also on the CPU when asked for explicitly (``auto`` stays fp32 there, which keeps CPU runs exact):
        # it runs the GPU track's bf16 code paths on a machine without a GPU.
        return torch.bfloat16
    if device.type != "cuda":
        # fp16 goes with CUDA's gradient scaler; elsewhere it means fp32, as before.
        return None
    return torch.float16


def build_optimizer(param_groups: Iterable[dict[str, Any]], device: torch.device) -> torch.optim.AdamW:
    groups = [dict(g) for g in param_groups]
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group.setdefault("weight_decay_scale", 1.0)
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, **kwargs)


def clip_gradients(module: torch.nn.Module, max_norm: float, mode: str = "per_param") -> torch.Tensor:
    """Clip gradients in place and return the total gradient norm before clipping.

    ``per_param`` scales each parameter's gradient to norm ``<= max_norm`` on its own, exactly as DINO's
    ``utils.clip_gradients`` (``clip_coef = max_norm / (norm + 1e-6)`` applied when below 1);
    ``global`` is ``torch.nn.utils.clip_grad_norm_``.
    """
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if mode == "global":
        return torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None], max_norm)
    # One stacked computation of the coefficients instead of three tiny ops per parameter (the same
    # element-wise arithmetic, so the same bits; ~450 kernel launches fewer per step for a ViT-T).
    norms = torch.stack(torch._foreach_norm(grads))
    coefficients = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    torch._foreach_mul_(grads, list(coefficients.unbind(0)))
    return torch.linalg.vector_norm(norms)


class Trainer:
    """Drives an objective over an endless loader of view batches.

    Args:
        objective: The objective module (already on ``device``).
        optim: Optimisation settings; ``lr`` is for batch size 256 and scaled linearly (DINO).
        device: Where the step runs.
        precision: ``auto`` | ``fp32`` | ``bf16`` | ``fp16``.
        log_every: Steps between metric logs (and non-finite checks on CUDA).
        on_metrics: Called with ``(metrics, step)`` every ``log_every`` steps and at the end.
        on_checkpoint: Called with the 1-based step every ``checkpoint_every`` steps, and after the step at which
            ``stop_requested`` asks training to stop.
        checkpoint_every: 0 disables periodic checkpoints.
        compile: Compile the objective's backbone blocks and losses while :meth:`fit` runs (see
            :mod:`dssl.engine.compilation`); the objective's Python (schedules, step) stays eager.
        compile_backend: ``torch.compile`` backend when ``compile`` is set.
        profiler: Optional :class:`~dssl.engine.profiling.StepProfiler`: each step's phases (data, forward,
            backward, optimizer, logging) are reported to it, and :meth:`fit` stops once it has recorded
            its steps.
        stop_requested: Asked after every step (data parallel: at every log step, agreed over ranks); when it
            returns a reason (a signal name), the trainer calls ``on_checkpoint`` for the step just finished and
            raises :class:`~dssl.errors.PreemptedError`.
    """

    def __init__(
        self,
        objective: torch.nn.Module,
        optim: OptimConfig,
        *,
        device: torch.device,
        precision: str = "auto",
        log_every: int = 10,
        on_metrics: Callable[[Mapping[str, float], int], None] | None = None,
        on_checkpoint: Callable[[int], None] | None = None,
        checkpoint_every: int = 0,
        compile: bool = False,
        compile_backend: str = "inductor",
        profiler: StepProfiler | None = None,
        stop_requested: Callable[[], str | None] | None = None,
    ) -> None:
        self.objective = objective
        self.stop_requested = stop_requested
        self.optim = optim
        self.device = device
        self.amp_dtype = autocast_dtype(precision, device)
        self.log_every = log_every
        self.on_metrics = on_metrics
        self.on_checkpoint = on_checkpoint
        self.checkpoint_every = checkpoint_every
        self.compile = compile
        self.compile_backend = compile_backend
        self.optimizer = build_optimizer(objective.param_groups(), device)  # type: ignore[operator]
        total = optim.steps
        peak_lr = optim.lr * optim.batch_size / 256.0
        warmup = min(optim.warmup_steps, total - 1) if total > 1 else 0
        self.lr_schedule = cosine_schedule(peak_lr, optim.min_lr, total, warmup_steps=warmup)
        self.wd_schedule = cosine_schedule(optim.weight_decay, optim.weight_decay_end, total)
        # Read once as Python floats (the values float(schedule[step]) gave), not indexed per step.
        self._lr_values: list[float] = self.lr_schedule.tolist()
        self._wd_values: list[float] = self.wd_schedule.tolist()
        self.profiler = profiler
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.start_step = 0
        self.dist = distributed_context()
        # RNG state set by load_state_dict, restored when fit starts (after the loader's iterator is created,
        # since creating it draws from torch's global generator). The metric window (sums of the steps since
        # the last log, their count, the last logged metrics) is kept current by fit so checkpoints hold it.
        self._resume_rng: Mapping[str, Any] | None = None
        self._window_sums: dict[str, Any] = {}
        self._window_count = 0
        self._last_metrics: dict[str, float] = {}

    def _set_schedules(self, step: int) -> None:
        lr = self._lr_values[min(step, len(self._lr_values) - 1)]
        wd = self._wd_values[min(step, len(self._wd_values) - 1)]
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
            group["weight_decay"] = wd * group["weight_decay_scale"]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def fit(self, batches: Iterable[Any], *, progress: Any = None) -> TrainingSummary:
        """Run from :attr:`start_step` to ``optim.steps``; raises :class:`NonFiniteLossError`.

        With ``compile``, the objective's ``compile_modules()`` run compiled meanwhile
        (:func:`dssl.engine.compilation.compiled`) and eager again afterwards.

        Args:
            batches: An endless iterable of view batches; after :meth:`load_state_dict` it must start at
                the batch of :attr:`start_step` (``training_loader(..., start_step=...)``).
            progress: Optional progress display.

        Returns:
            The summary; ``final_metrics`` are those of the last log window.
        """
        if not self.compile:
            return self._fit(batches, progress=progress)
        from dssl.engine.compilation import compiled

        with compiled(self.objective, backend=self.compile_backend):
            return self._fit(batches, progress=progress)

    def _fit(self, batches: Iterable[Any], *, progress: Any = None) -> TrainingSummary:
        """The training loop of :meth:`fit`."""
        objective = self.objective
        objective.train()
        total = self.optim.steps
        sums: dict[str, Any] = dict(self._window_sums)
        count = self._window_count
        images = 0
        check_every = 1 if self.device.type == "cpu" else self.log_every
        first_bad = torch.full((), total, dtype=torch.long, device=self.device)
        started = window_start = time.perf_counter()
        last_metrics: dict[str, float] = dict(self._last_metrics)
        iterator = iter(batches)
        if self._resume_rng is not None:
            from dssl.engine.seeding import set_rng_state

            set_rng_state(self._resume_rng)
            self._resume_rng = None
        self._window_sums, self._window_count, self._last_metrics = sums, count, last_metrics
        profiler = self.profiler
        steps_run = 0
        for step in range(self.start_step, total):
            if profiler is not None:
                if profiler.finished:
                    break
                profiler.begin_step()
            batch = next(iterator).to(self.device, non_blocking=True)
            if profiler is not None:
                profiler.mark("data")
            self._set_schedules(step)
            with self._autocast():
                outputs = objective(batch, step=step)
            loss = outputs["loss"]
            finite = torch.isfinite(loss.detach())
            first_bad = torch.where(finite, first_bad, torch.clamp(first_bad, max=step))
            if (step + 1) % check_every == 0 and int(first_bad) < total:
                raise NonFiniteLossError(f"non-finite loss at step {int(first_bad)}: {loss.detach().item()}")
            if profiler is not None:
                profiler.mark("forward")
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if self.dist.enabled:
                all_reduce_gradients(objective, self.dist.world_size)
            if profiler is not None:
                profiler.mark("backward")
            if self.optim.clip_grad is not None:
                outputs = {
                    **outputs,
                    "grad_norm": clip_gradients(objective, self.optim.clip_grad, self.optim.clip_mode),
                }
            objective.before_optimizer_step(step=step)  # type: ignore[operator]
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            objective.after_step(step=step)  # type: ignore[operator]
            if profiler is not None:
                profiler.mark("optimizer")

            for key, value in outputs.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    sums[key] = sums.get(key, 0) + value.detach().float()
            count += 1
            self._window_sums, self._window_count = sums, count
            images += batch.crops[0].shape[0]
            done = step + 1
            if done % self.log_every == 0 or done == total:
                # One host-device sync per log interval, not per step.
                now = time.perf_counter()
                last_metrics = {k: float(v) / count for k, v in sums.items()}
                if self.dist.enabled:
                    last_metrics = mean_over_ranks(last_metrics, self.device)  # type: ignore[arg-type]
                last_metrics["lr"] = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0]["lr_scale"]
                rate = images * self.dist.world_size / max(now - window_start, 1e-9)  # all ranks
                last_metrics["images_per_second"] = rate
                if not all(math.isfinite(v) for k, v in last_metrics.items() if k != "grad_norm"):
                    raise NonFiniteLossError(f"non-finite metrics at step {step}: {last_metrics}")
                if self.on_metrics is not None:
                    self.on_metrics(last_metrics, done)
                if progress is not None:
                    progress.update(done, {"loss": last_metrics["loss"]}, rate)
                sums, count, images, window_start = {}, 0, 0, now
                self._window_sums, self._window_count, self._last_metrics = sums, count, last_metrics
            elif progress is not None and progress.interactive:
                progress.update(done, {"loss": float(loss.detach())} if self.device.type == "cpu" else {}, None)
            checkpointed = False
            if self.checkpoint_every and done % self.checkpoint_every == 0 and done != total and self.on_checkpoint:
                self.on_checkpoint(done)
                checkpointed = True
            reason = self._stop_reason(done, total)
            if reason is not None:
                if self.on_checkpoint is not None and not checkpointed:
                    self.on_checkpoint(done)
                raise PreemptedError(reason, step=done)
            steps_run += 1
            if profiler is not None:
                profiler.mark("logging")
                profiler.end_step()
        seconds = time.perf_counter() - started
        return TrainingSummary(
            steps=steps_run,
            seconds=seconds,
            images_per_second=steps_run * self.optim.batch_size / max(seconds, 1e-9),
            final_metrics=last_metrics,
        )

    def _stop_reason(self, done: int, total: int) -> str | None:
        """Why training must stop after step ``done``, or ``None``; every rank gets the same answer."""
        if self.stop_requested is None:
            return None
        if not self.dist.enabled:
            return self.stop_requested()
        # Every rank must stop after the same step, so they agree at the log steps (one collective each).
        if done % self.log_every and done != total:
            return None
        local = self.stop_requested()
        return (local or "a preemption signal on another rank") if any_rank(local is not None, self.device) else None

    def state_dict(self, step: int) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly after ``step`` steps.

        Call it between steps (``on_checkpoint``) or after :meth:`fit`: it holds the objective's state
        (student, teacher, centres, queues), the optimiser and grad-scaler states, the global random
        generators and the partly accumulated metric window, so that a run resumed from it logs the
        same metrics as one never interrupted.

        Args:
            step: Optimiser steps done.

        Returns:
            A mapping that ``torch.save`` writes and ``torch.load(weights_only=True)`` reads back.
        """
        from dssl.engine.seeding import rng_state

        sums = self._window_sums
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "objective": self.objective.state_for_checkpoint(),  # type: ignore[operator]
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
            "metrics": {
                "window_sums": {k: float(v) for k, v in sums.items()},
                "window_count": int(self._window_count),
                "last": dict(self._last_metrics),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` so that :meth:`fit` continues at step ``state["step"]``.

        Args:
            state: What :meth:`state_dict` returned (read back from a checkpoint).

        Raises:
            ValueError: The checkpoint lacks what resuming needs (an older format, or a backbone-only file).
        """
        missing = [key for key in ("step", "objective", "optimizer", "rng") if key not in state]
        if missing:
            raise ValueError(f"not a resumable training checkpoint (missing {', '.join(missing)})")
        self.objective.load_checkpoint_state(state["objective"])  # type: ignore[operator]
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.start_step = int(state["step"])
        self._resume_rng = state["rng"]
        metrics = state.get("metrics") or {}
        self._window_sums = {k: float(v) for k, v in (metrics.get("window_sums") or {}).items()}
        self._window_count = int(metrics.get("window_count", 0))
        self._last_metrics = {k: float(v) for k, v in (metrics.get("last") or {}).items()}
