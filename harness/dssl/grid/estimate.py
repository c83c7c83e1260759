"""Cost before commitment: ``dssl grid FILE --estimate`` times a few training steps of each distinct cell.

The trained cells of a grid are grouped by what sets the cost of a step: the objective with its options,
the backbone with its options, the augmentation (the crop set), the batch size, precision, compile and device
(:func:`cost_key`); seeds, learning rates and schedules do not change it. One cell of each group is built
exactly as the run builds it and trained for ``warmup + steps`` steps by the engine under
:class:`~dssl.engine.profiling.StepProfiler` (the ``dssl bench --profile-steps`` path); the recorded steps give
the seconds per step, and the group's device-hours are ``s/step x optim.steps x runs / 3600``
(:func:`device_hours`). The weights are not loaded (the profiled cell starts from random init): a step costs
the same whatever the weights, and an estimate must not need the checkpoint.

Peak memory is CUDA's ``max_memory_allocated`` on a GPU; on the CPU the increase of this process's peak
resident set size over the profile (Linux ``VmHWM``, reset before each cell where the kernel allows it; data
loader workers are other processes and not counted). ``profile_batch`` profiles at a smaller batch than the
cell's and scales the time per step linearly with the batch (the table says so): a way to estimate a batch
that does not fit the device at hand; the peak memory is then the smaller batch's. Evaluation is not
estimated. This module imports no torch at import time.
"""

from __future__ import annotations

import functools
import io
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dssl.errors import ConfigError
from dssl.grid.plan import PlannedCell

if TYPE_CHECKING:
    from rich.console import Console

    from dssl.config import RunConfig
    from dssl.host import PluginHost

#: Text shown under every estimate: what it leaves out.
EVALUATION_NOTE = "Evaluation (the evaluators after training, and evaluation-only cells) is not included."


@dataclass(frozen=True)
class StepMeasurement:
    """What profiling one cell measured.

    Attributes:
        seconds_per_step: Mean wall seconds of a recorded step (data, forward, backward, optimizer, logging).
        peak_memory_bytes: Peak memory of the profile (see the module docstring), ``None`` when unknown.
        device: The device the steps ran on, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``.
        batch_size: The batch the steps were profiled at.
        cpu_seconds_per_step: Process CPU seconds (all threads) per recorded step.
        threads: Threads of torch's intra-op pool during the steps.
    """

    seconds_per_step: float
    peak_memory_bytes: int | None
    device: str
    batch_size: int
    cpu_seconds_per_step: float | None = None
    threads: int | None = None


@dataclass
class CellCost:
    """The estimate of one group of trained cells that share a cost key.

    Attributes:
        label: The group's cell label (``objective / backbone / dataset``) of its first cell.
        cells: The grid cells of the group (one per seed, and per row with the same cost).
        batch_size: The runs' batch size.
        measurement: What profiling measured.
    """

    label: str
    cells: list[PlannedCell]
    batch_size: int
    measurement: StepMeasurement

    @property
    def runs(self) -> int:
        """Runs (cells) of the group."""
        return len(self.cells)

    @property
    def steps_per_run(self) -> list[int]:
        """``optim.steps`` of each run of the group."""
        return [item.config.optim.steps for item in self.cells]

    @property
    def seconds_per_step(self) -> float:
        """Seconds per step at the runs' batch (scaled linearly when profiled at another batch)."""
        return self.measurement.seconds_per_step * self.batch_size / self.measurement.batch_size

    @property
    def cpu_seconds_per_step(self) -> float | None:
        """Process CPU seconds per step at the runs' batch (scaled like :attr:`seconds_per_step`)."""
        cpu = self.measurement.cpu_seconds_per_step
        return None if cpu is None else cpu * self.batch_size / self.measurement.batch_size

    @property
    def scaled(self) -> bool:
        """Whether the time per step was scaled from a smaller profiled batch."""
        return self.measurement.batch_size != self.batch_size

    @property
    def device_hours(self) -> float:
        """Device-hours of all the group's runs: s/step x steps x runs / 3600 (each run's own steps)."""
        return sum(device_hours(self.seconds_per_step, steps) for steps in self.steps_per_run)


@dataclass
class GridEstimate:
    """Per-group costs of a grid and what was left out.

    Attributes:
        costs: One entry per cost group, in grid order.
        evaluation_only: Cells that train nothing (not estimated).
        device: The device the profile ran on.
        threads: CPU threads of torch's intra-op pool during the profile.
        profiled_steps: Recorded steps per group (after ``warmup`` steps).
        warmup: Steps run first and not recorded.
        seconds: Wall time of the whole estimate.
    """

    costs: list[CellCost]
    evaluation_only: list[PlannedCell] = field(default_factory=list)
    device: str = "cpu"
    threads: int = 1
    profiled_steps: int = 0
    warmup: int = 0
    seconds: float = 0.0

    @property
    def total_hours(self) -> float:
        """Device-hours of every trained cell of the grid."""
        return sum(cost.device_hours for cost in self.costs)

    @property
    def on_cpu(self) -> bool:
        """Whether the profile ran on the CPU (then the hours are CPU hours)."""
        return self.device.startswith("cpu")


def device_hours(seconds_per_step: float, steps: int, runs: int = 1) -> float:
    """Device-hours of ``runs`` runs of ``steps`` steps at ``seconds_per_step``: ``s/step x steps x runs / 3600``."""
    return seconds_per_step * steps * runs / 3600.0


def cost_key(config: RunConfig) -> str:
    """What sets the cost of a training step: objective, backbone, crops, batch, precision, compile, device."""
    keys = ("objective", "backbone", "augmentation", "precision", "compile", "device")
    data = config.to_dict()
    payload = {key: data[key] for key in keys}
    payload["backbone"] = {k: v for k, v in payload["backbone"].items() if k != "init"}
    payload["batch_size"] = data["optim"]["batch_size"]
    payload["num_workers"] = data["optim"]["num_workers"]
    return json.dumps(payload, sort_keys=True, default=str)


def profile_config(config: RunConfig, *, steps: int, warmup: int, batch_size: int | None) -> RunConfig:
    """The configuration that is profiled for ``config``: random init, no tracking, room for the steps."""
    update: dict[str, Any] = {"backbone": config.backbone.model_copy(update={"init": "random"})}
    optim: dict[str, Any] = {"steps": max(config.optim.steps, warmup + steps)}
    if batch_size is not None:
        optim["batch_size"] = batch_size
    update["optim"] = config.optim.model_copy(update=optim)
    update["tracking"] = config.tracking.model_copy(update={"enabled": False})
    update["baselines"] = []
    return config.model_copy(update=update)


def measure_steps(config: RunConfig, *, host: PluginHost, steps: int, warmup: int) -> StepMeasurement:
    """Build ``config`` and time ``steps`` training steps after ``warmup`` ones on the configured device, here.

    Raises:
        ConfigError: The configuration does not build (missing data names the expected layout).
    """
    import torch
    from rich.console import Console

    from dssl.engine.profiling import StepProfiler
    from dssl.runner import profile_bench
    from dssl.runner.build import resolve_device

    class CpuTimedProfiler(StepProfiler):
        """Also adds up the process CPU time (all threads) of the recorded steps."""

        cpu_seconds = 0.0
        _cpu_start = 0.0

        def begin_step(self) -> None:
            super().begin_step()
            if self._recording:
                self._cpu_start = time.process_time()

        def end_step(self) -> None:
            if self._recording:
                self.cpu_seconds += time.process_time() - self._cpu_start
            super().end_step()

    device = resolve_device(config.device)
    profiler = CpuTimedProfiler(device, steps=steps, warmup=warmup)
    quiet = Console(file=io.StringIO())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start_memory = torch.cuda.memory_allocated(device)
        report = profile_bench(config, host=host, steps=steps, warmup=warmup, console=quiet, profiler=profiler)
        peak: int | None = torch.cuda.max_memory_allocated(device) - start_memory
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        start_rss = _reset_peak_rss()
        report = profile_bench(config, host=host, steps=steps, warmup=warmup, console=quiet, profiler=profiler)
        peak = max(0, _peak_rss() - start_rss) if start_rss is not None else None
        name = str(device)
    recorded = max(report.steps, 1)
    return StepMeasurement(
        seconds_per_step=report.total_seconds / recorded,
        peak_memory_bytes=peak,
        device=name,
        batch_size=config.optim.batch_size,
        cpu_seconds_per_step=profiler.cpu_seconds / recorded,
        threads=torch.get_num_threads(),
    )


def measure_isolated(config: RunConfig, *, plugins: dict[str, Any], steps: int, warmup: int) -> StepMeasurement:
    """:func:`measure_steps` in a fresh spawned process: its memory peak is the cell's alone (in one process the
    allocator reuses what earlier cells freed), and a crash or an out-of-memory stays there.

    Args:
        config: The profile configuration.
        plugins: ``{"disabled": (...), "strict": bool}``: the host of the child process.
        steps: Recorded steps.
        warmup: Unrecorded steps first.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_measure_child, config.to_dict(), dict(plugins), steps, warmup)
        try:
            return future.result()
        except BrokenProcessPool:
            raise ConfigError("the profiling process died (out of memory?); try a smaller --estimate-batch") from None


def _measure_child(config: dict[str, Any], plugins: dict[str, Any], steps: int, warmup: int) -> StepMeasurement:
    """Entry point of the spawned profiling process."""
    from dssl.config import RunConfig
    from dssl.errors import DsslError
    from dssl.host import get_host

    host = get_host(disabled=plugins.get("disabled", ()), strict=bool(plugins.get("strict")))
    try:
        return measure_steps(RunConfig.model_validate(config), host=host, steps=steps, warmup=warmup)
    except DsslError as exc:  # sent back as a ConfigError with the same message (every dssl error pickles so)
        raise ConfigError(str(exc)) from None


def _reset_peak_rss() -> int | None:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs`` 5); returns that RSS in bytes.

    Where the reset is not available, returns the lifetime peak (``ru_maxrss``): the increase measured
    against it is then only the amount by which the profile exceeds every earlier peak.
    """
    clear_refs = Path("/proc/self/clear_refs")
    try:
        clear_refs.write_text("5")
        return _status_kib("VmHWM") * 1024
    except OSError:
        return _peak_rss()


def _peak_rss() -> int:
    """This process's peak resident set size in bytes."""
    try:
        return _status_kib("VmHWM") * 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise OSError(f"no {field_name} in /proc/self/status")


Measure = Callable[["RunConfig"], StepMeasurement]


def estimate_grid(
    cells: Sequence[PlannedCell],
    *,
    host: PluginHost,
    steps: int = 3,
    warmup: int = 1,
    batch_size: int | None = None,
    measure: Measure | None = None,
    isolate: bool = True,
    plugins: dict[str, Any] | None = None,
    console: Console | None = None,
) -> GridEstimate:
    """Profile one cell per cost group of the grid's trained cells and add up their device-hours.

    Args:
        cells: The planned cells (:func:`dssl.grid.plan.plan_grid`), done ones included: the estimate is the
            cost of the whole grid.
        host: Plugin host that builds the cells.
        steps: Training steps recorded per group (``>= 1``).
        warmup: Steps run first and not recorded (``>= 0``).
        batch_size: Profile at this batch instead of each cell's and scale the time per step linearly.
        measure: Times one profile configuration (default: :func:`measure_isolated`, or :func:`measure_steps`
            in this process when ``isolate`` is false); tests stub it.
        isolate: Profile each group in a fresh process (clean memory peaks).
        plugins: ``{"disabled": (...), "strict": bool}`` for the host of those processes.
        console: Where the progress goes (stderr by default).

    Returns:
        The estimate.

    Raises:
        ConfigError: Bad ``steps``/``warmup``/``batch_size``, or a cell does not build (missing data, ...);
            the message names the cell.
    """
    import torch
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if steps < 1:
        raise ConfigError(f"--estimate-steps must be >= 1, got {steps}")
    if warmup < 0:
        raise ConfigError(f"--estimate-warmup must be >= 0, got {warmup}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--estimate-batch must be >= 1, got {batch_size}")
    if measure is None and isolate:
        measure = functools.partial(measure_isolated, plugins=plugins or {}, steps=steps, warmup=warmup)
    elif measure is None:
        measure = functools.partial(measure_steps, host=host, steps=steps, warmup=warmup)
    groups: dict[str, list[PlannedCell]] = {}
    evaluation_only = []
    for item in cells:
        if item.cell.checkpoint is not None:
            evaluation_only.append(item)
        else:
            groups.setdefault(cost_key(item.config), []).append(item)
    console = console or Console(stderr=True)
    started = time.perf_counter()
    costs = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("profiling", total=len(groups))
        for members in groups.values():
            first = members[0]
            profiled = profile_config(first.config, steps=steps, warmup=warmup, batch_size=batch_size)
            progress.update(
                task,
                description=escape(
                    f"profiling {first.cell.label} ({warmup} + {steps} steps at batch {profiled.optim.batch_size})"
                ),
            )
            try:
                measurement = measure(profiled)
            except ConfigError as exc:
                raise ConfigError(f"estimating cell {first.cell.label}: {exc}") from None
            costs.append(
                CellCost(
                    label=first.cell.label,
                    cells=members,
                    batch_size=first.config.optim.batch_size,
                    measurement=measurement,
                )
            )
            progress.advance(task)
    device = costs[0].measurement.device if costs else "cpu"
    return GridEstimate(
        costs=costs,
        evaluation_only=evaluation_only,
        device=device,
        threads=(costs[0].measurement.threads if costs else None) or torch.get_num_threads(),
        profiled_steps=steps,
        warmup=warmup,
        seconds=time.perf_counter() - started,
    )


def _memory(value: int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def render_estimate(estimate: GridEstimate, name: str) -> str:
    """The estimate as text: a table per cost group and the total, with what the figures are for."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    unit = "CPU-hours" if estimate.on_cpu else "GPU-hours"
    table = Table(
        title=f"grid {escape(name)}: training cost estimate on {escape(estimate.device)}", title_justify="left"
    )
    for column, justify in (
        ("cell", "left"),
        ("runs", "right"),
        ("steps", "right"),
        ("batch", "right"),
        ("s/step", "right"),
        *([("CPU s/step", "right")] if estimate.on_cpu else []),
        (unit, "right"),
        ("peak memory", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for cost in estimate.costs:
        seconds = _seconds(cost.seconds_per_step) + ("*" if cost.scaled else "")
        memory = _memory(cost.measurement.peak_memory_bytes)
        if cost.scaled:
            memory += f" (batch {cost.measurement.batch_size})"
        low, high = min(cost.steps_per_run), max(cost.steps_per_run)
        cpu = cost.cpu_seconds_per_step
        cpu_cells = (
            [] if not estimate.on_cpu else ["n/a" if cpu is None else _seconds(cpu) + ("*" if cost.scaled else "")]
        )
        table.add_row(
            escape(cost.label),
            str(cost.runs),
            f"{low:,}" if low == high else f"{low:,}-{high:,}",
            str(cost.batch_size),
            seconds,
            *cpu_cells,
            _hours(cost.device_hours),
            memory,
        )
    runs = sum(cost.runs for cost in estimate.costs)
    table.add_section()
    blank = [""] * (4 if estimate.on_cpu else 3)
    table.add_row("total", str(runs), *blank, _hours(estimate.total_hours), "")
    buffer = io.StringIO()
    Console(file=buffer, width=140, color_system=None, force_terminal=False, highlight=False).print(table)
    lines = [buffer.getvalue().rstrip("\n")]
    lines.append(
        f"{unit} = s/step x steps x runs / 3600; s/step is the mean of {estimate.profiled_steps} profiled steps "
        f"after {estimate.warmup} warm-up, per distinct (method, backbone, crops, batch); runs = cells (seeds)."
    )
    if any(cost.scaled for cost in estimate.costs):
        lines.append("* profiled at a smaller batch and scaled linearly with the batch (an extrapolation).")
    if estimate.on_cpu:
        lines.append(
            f"This estimate is for the CPU ({estimate.threads} torch threads, {os.cpu_count()} cores visible), not "
            "for a GPU. CPU s/step: process CPU time (all threads) per step, next to the wall-clock s/step the hours "
            "use (their ratio below the thread count means other load or waiting). Peak memory: the profiling "
            "process's peak RSS increase (loader workers not counted)."
        )
    else:
        lines.append("Peak memory: torch.cuda.max_memory_allocated over the profile.")
    note = EVALUATION_NOTE
    if estimate.evaluation_only:
        note += f" ({len(estimate.evaluation_only)} evaluation-only cells not estimated.)"
    lines.append(note)
    lines.append(f"Profiling took {estimate.seconds:.0f} s.")
    return "\n".join(lines)
