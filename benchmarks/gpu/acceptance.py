"""GPU acceptance run: every GPU code path of dssl exercised in one script that needs no dataset.

Usage::

    python benchmarks/gpu/acceptance.py                               # CUDA: the acceptance run (<= 8 min on one H100)
    python benchmarks/gpu/acceptance.py --device cpu --tiny --no-append   # the same script end to end on a CPU (test)
    python benchmarks/gpu/acceptance.py --parts train,eval --methods dino,paka   # a subset, e.g. after a fix

What runs, in this order (so that a budget cut only ever hits the compiled runs, the last and least predictable):

1. **train** — for each first-party method (``dino``, ``cotap``, ``cotap+oaf`` = cotap with
   ``objective.options.filter=oaf``, ``paka``, ``udi``, ``stellar``) on ViT-S/16 (``vit_s16``) with the crops of its
   ``gpu`` preset (registry.yaml ``presets.gpu``; crop sizes rounded to the nearest multiple of the patch size, so
   PaKA's 518/98 px, made for patch 14, become 512/96 px), ``precision: bf16``, random init, batch 64 for every
   method (the per-GPU batch of DINO's recipe; the presets' own batches, up to UDI's 1,024, are multi-GPU totals),
   on embedded scenes rendered at 224 px (``dataset.options.size=224``; no dataset on disk). As
   ``benchmarks/perf/harness_overhead.py`` does, 4 batches (``Settings.held``) are drawn from the run's own loader
   first and held on the device, so data loading is excluded; then 3 untimed steps (``warmup``) of the engine and of a
   bare PyTorch loop of the same objective (``harness_overhead.BareLoop``), then 3 alternating rounds (``rounds``) of
   5 steps (``round_steps``).
   Reported: images/s of the engine (batch / median time per step), the median ms/step of each, engine / bare
   (ratio of the medians) and the peak memory (``torch.cuda.max_memory_allocated`` since the run was built; on a
   CPU the process's peak RSS so far, which never goes down).
2. **torchrun** — ``torchrun --standalone --nproc_per_node 1`` runs this script as a worker: it joins a process group
   (NCCL on CUDA, gloo on a CPU) and trains DINO for a few steps with the run's real loader (worker processes,
   pinned memory on CUDA). dssl itself joins a group only for more than one process (one process needs none), so
   the worker joins it first, checks one ``all_reduce``, and the DINO centre's batch mean then goes through the
   process group at every step. Reported: images/s with the loader (the last log window), the backend.
3. **eval** — every dense evaluator registered (non-diagnostic ones and the diagnostics; ``overcluster_neco`` only
   when faiss imports) on the features of the backbone DINO trained in part 1 (its teacher), extracted on the
   device: 32 train / 16 val embedded scenes rendered at 448 px; the NeCo protocols (``linear_seg_neco``,
   ``overcluster_neco``) at their 448 px, the others at 224 px (``input_size``). Protocol defaults otherwise.
4. **compile** — each method again with ``compile: true`` (whatever the engine compiles), engine only: the warm-up
   steps (which include compiling) are timed separately, then the rounds as in part 1.

Failures are collected, never fatal: every part runs, a rich summary table is printed, a ``RESULTS.md`` section
naming the device is appended (``--no-append`` skips it, ``--results PATH`` writes elsewhere) and the exit code is 1
when anything failed or ran out of time, else 0.

Time budget (``--budget-s``, default 480 s = 8 min on CUDA). The script tracks its elapsed time; each part gets
``min(its cap, what is left of the budget)`` and is interrupted (``SIGALRM``) and marked FAILED (over budget) when it
exceeds it; a part that would start with less than ``MIN_PART_S`` left is skipped, which fails the run too, because
then it did not cover everything in 8 minutes. Without a budget (the default on a CPU) nothing is interrupted.

The caps and the plan below are **estimates**, not measurements (no GPU was lent when the script was written): derived
from DINO's published cost, ViT-S/16 with 2x224 + 10x96 crops, 100 epochs of ImageNet-1k in 24.2 h on 16 V100 (Caron et
al., arXiv 2104.14294, Table 8), i.e. about 128.1 M / 87,120 s / 16 = 92 images/s per V100; an H100 in bf16 is taken as
about 5x a V100 in fp16 (estimate), so **about 460 images/s for DINO** (CoTAP, UDI alike; PaKA's 2x512 px globals about
3.5x DINO's cost per image, STELLAR's 8x224 + 8x96 views about 2.5x; estimates from the token counts). One method then
costs, per run of 2 x (3 + 3 x 5) = 36 steps of 64 images: DINO ~5 s, PaKA ~18 s, STELLAR ~13 s, plus ~5 s to build and
draw the held batches: **part 1 ~ 90 s**. Part 2: ~10 s to start Python/torch/dssl, ~10 s of training with 8 loader
workers: **~ 30 s**. Part 3: features, linear probes, Hummingbird's retrieval and the diagnostics run on the GPU
(seconds); the k-means and PCA of kmeans_seg, overcluster and overcluster_neco on the CPU (scikit-learn, faiss; 16
cores): **~ 60-90 s** (estimate. Measured instead on the project's 2-core VM, features computed on its CPU, with 64
train / 32 val images: 1,133 s wall at load ~11, 446 CPU-s of which faiss's k-means in overcluster_neco took 211 and the
ViT-S/16 forward passes at 448 px most of the rest; the eval sets were then halved to keep this part small.) Part 4:
compiling a ViT-S objective (forward + backward, two crop sizes) with inductor on 16 cores takes **~ 30-60 s per
method** (estimate; later methods reuse inductor's on-disk FX-graph cache where their graphs match), **~ 250 s** in all.
Total ~ 430-470 s, inside 480 s with little slack: the first H100 run should replace these estimates with its measured
part times (printed in the summary and in RESULTS.md), and the caps be adjusted from them.

``--tiny`` (with ``--device cpu``, what the test runs): ``vit_cpu8`` at 32 px (crops 32/16 px, the presets' crop
counts), each objective's ``test_options`` (small heads), batch 4, 1 warm-up step and 1 round of 2 steps; tiny eval
sets (16/8 images at 32 px) with the evaluators' ``test_options``; no budget (the caps are for one H100) and no
compiled run unless asked (``--compile-methods dino``): with the whole objective compiled (main 463c616) inductor
took 240 s (wall; 2-core VM at load ~10, 2026-12-06) before the tiny DINO's first step; compiling the block stacks
and losses instead (``dssl.engine.compilation``) still takes about a minute of CPU per objective there
(``tests/engine/test_compile.py``), beyond a test's budget. Measured there, the rest of
the tiny run takes about a minute (the test's subprocess: 67 s wall at load ~11).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import itertools
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "perf"))
from _report import command_line, machine_line  # noqa: E402
from harness_overhead import BareLoop  # noqa: E402
from objective_cost import OBJECTIVES as METHODS  # noqa: E402  (label, objective, extra --set lines)

PARTS = ("train", "torchrun", "eval", "compile")
#: Seconds a part may take at most (before the total budget limits it further); estimates for one H100, see above.
PART_CAPS_S = {"train": 60.0, "torchrun": 90.0, "eval": 150.0, "compile": 90.0}
#: A part is not started with less time than this left: it could not finish.
MIN_PART_S = 5.0
DEFAULT_BUDGET_S = 480.0
#: Tiny-mode evaluator options on top of the registry's ``test_options`` (made for a 4-class synthetic set):
#: NeCo's overclustering refuses K below the embedded scenes' 12 classes.
TINY_EVAL_OPTIONS: dict[str, dict[str, Any]] = {"overcluster_neco": {"ks": ["num_classes", 24]}}


class OverBudget(BaseException):
    """Raised by the part deadline; a BaseException so that no ``except Exception`` in dssl swallows it."""


@dataclass(frozen=True)
class Settings:
    """Sizes and step counts of one acceptance run (full on CUDA, tiny for the CPU test)."""

    device: str
    tiny: bool
    backbone: str
    patch_size: int
    image_size: int
    batch_size: int
    held: int
    warmup: int
    rounds: int
    round_steps: int
    torchrun_steps: int
    eval_size: int
    eval_train: int
    eval_val: int
    dense_input_size: int | None


def settings_for(device: str, tiny: bool) -> Settings:
    if tiny:
        return Settings(device, True, "vit_cpu8", 8, 32, 4, 2, 1, 1, 2, 2, 32, 16, 8, None)
    return Settings(device, False, "vit_s16", 16, 224, 64, 4, 3, 3, 5, 20, 448, 32, 16, 224)


@dataclass
class Outcome:
    """One row of the summary."""

    part: str
    name: str
    status: str = "ok"  # ok | FAILED | skipped
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    figures: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status != "ok"


class Budget:
    """The run's time budget: elapsed time, and a deadline per part (``SIGALRM``)."""

    def __init__(self, total_s: float | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total_s = total_s
        self.clock = clock
        self.started = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return float("inf") if self.total_s is None else self.total_s - self.elapsed()

    def limit(self, cap: float | None) -> float:
        """Seconds the next part may take: its cap, or what is left of the budget when that is less; unlimited
        without a budget (the caps are estimates for one H100, meaningless elsewhere)."""
        if self.total_s is None:
            return float("inf")
        return min(cap if cap is not None else float("inf"), self.left())

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Raise :class:`OverBudget` in the main thread after ``seconds`` (no limit when infinite)."""
        if seconds == float("inf") or not hasattr(signal, "setitimer"):
            yield
            return

        def expire(signum: int, frame: Any) -> None:
            raise OverBudget(f"over its budget of {seconds:.0f} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def run_part(outcome: Outcome, budget: Budget, cap: float | None, body: Callable[[Outcome], None]) -> Outcome:
    """Run ``body(outcome)`` under the part's deadline; any exception or overrun marks the outcome FAILED."""
    limit = budget.limit(cap)
    if budget.left() < MIN_PART_S:
        outcome.status, outcome.detail = "skipped", f"budget spent ({budget.elapsed():.0f} s elapsed)"
        return outcome
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        with budget.deadline(limit):
            body(outcome)
    except OverBudget as exc:
        outcome.status, outcome.detail = "FAILED", str(exc)
    except Exception as exc:  # collected, reported, and the run goes on
        outcome.status, outcome.detail = "FAILED", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        outcome.seconds = time.perf_counter() - started
        outcome.cpu_seconds = time.process_time() - cpu_started
        print(
            f"# {outcome.part} {outcome.name}: {outcome.status} in {outcome.seconds:.1f} s {outcome.detail}",
            file=sys.stderr,
            flush=True,
        )
    return outcome


# --- configuration -------------------------------------------------------------------------------------------


def dense_evaluators() -> list[str]:
    """Every registered dense evaluator whose required module imports (``overcluster_neco`` needs faiss)."""
    import importlib.util

    from dssl.api import list_components
    from dssl.plugin import DenseEvalOptions

    names = []
    for entry in list_components("evaluator"):
        model = entry.options_model()
        if model is None or not issubclass(model, DenseEvalOptions):
            continue
        required = entry.metadata.get("requires_module")
        if required and importlib.util.find_spec(required) is None:
            continue
        names.append(entry.name)
    return names


def evaluator_options(names: Sequence[str], settings: Settings) -> dict[str, dict[str, Any]]:
    """Tiny: each evaluator's ``test_options``; full: protocol defaults, 224 px for the non-NeCo protocols."""
    from dssl.api import get_component

    options: dict[str, dict[str, Any]] = {}
    for name in names:
        entry = get_component("evaluator", name)
        if settings.tiny:
            options[name] = dict(entry.metadata.get("test_options", {})) | TINY_EVAL_OPTIONS.get(name, {})
        elif not name.endswith("_neco"):
            options[name] = {"input_size": settings.dense_input_size}
    return options


def round_to_patch(size: int, patch: int) -> int:
    """The multiple of ``patch`` nearest to ``size`` (at least one patch)."""
    return max(patch, patch * round(size / patch))


def method_config(
    objective: str, extra: Sequence[str], settings: Settings, *, steps: int = 1000, **changes: Any
) -> Any:
    """The resolved run of one method: the ``gpu`` preset's crops on embedded scenes, bf16, random init.

    Args:
        objective: The registered objective.
        extra: ``--set`` lines of the method (``cotap+oaf``: the filter).
        settings: Sizes of this acceptance run.
        steps: ``optim.steps``, the length of the schedules (the timed steps train at their start).
        changes: Further API overrides (``compile``, ``evaluators``, ...).
    """
    from dssl.api import get_component, resolve

    sets = [
        "preset=gpu",
        f"device={settings.device}",
        "precision=bf16",
        "backbone.init=random",
        f"dataset.options.size={settings.image_size}",
        "dataset.options.num_train=4096",
        f"optim.batch_size={settings.batch_size}",
        # A schedule as long as a short run (the presets' run for days), no warm-up: the steps timed here train.
        f"optim.steps={steps}",
        "optim.warmup_steps=0",
        "tracking.enabled=false",
        "baselines=[]",
        *extra,
    ]
    if settings.tiny:
        test_options = get_component("objective", objective).metadata.get("test_options", {})
        sets += [f"objective.options.{k}={json.dumps(v)}" for k, v in test_options.items()]
        sets.append("optim.num_workers=0")
    preset = resolve(objective=objective, backbone=settings.backbone, dataset="embedded", sets=sets, **changes)
    # The preset's crop sizes made divisible by the patch size (tiny: 32/16 px); the backbone built for the globals.
    sizes = {"global_size": 32, "local_size": 16} if settings.tiny else {}
    for key in ("global_size", "local_size"):
        if key in preset.augmentation.options and not settings.tiny:
            sizes[key] = round_to_patch(int(preset.augmentation.options[key]), settings.patch_size)
    sets += [f"augmentation.options.{key}={size}" for key, size in sizes.items()]
    sets.append(f"backbone.options.img_size={sizes.get('global_size', settings.image_size)}")
    return resolve(objective=objective, backbone=settings.backbone, dataset="embedded", sets=sets, **changes)


def eval_changes(settings: Settings) -> dict[str, Any]:
    """The API overrides that give DINO's run the dense evaluators and their small eval sets."""
    names = dense_evaluators()
    return {
        "evaluators": names,
        "evaluator_options": evaluator_options(names, settings),
        "eval_dataset": {
            "name": "embedded",
            "options": {"size": settings.eval_size, "num_train": settings.eval_train, "num_val": settings.eval_val},
        },
    }


# --- measurements ----------------------------------------------------------------------------------------------


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: Any) -> str:
    """``torch.cuda.max_memory_allocated`` since :func:`reset_peak`; on a CPU the process's peak RSS so far."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return f"{rss_kib / 2**20:.2f} GiB RSS"


class ClipAwareBareLoop(BareLoop):
    """``harness_overhead.BareLoop`` (DINO's per-parameter clipping) with the run's clip mode: STELLAR clips the
    global norm, as the engine does for it."""

    def __init__(self, objective: Any, optim: Any, device: Any, amp_dtype: Any) -> None:
        super().__init__(objective, optim, device, amp_dtype)
        self.clip_mode = optim.clip_mode

    def run(self, batches: list[Any], steps: int) -> None:
        import torch

        if self.clip_mode == "per_param" or self.clip is None:
            super().run(batches, steps)
            return
        objective, optimizer = self.objective, self.optimizer
        for step in range(steps):
            batch = batches[step % len(batches)]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext():
                loss = objective(batch, step=step)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip)
            objective.before_optimizer_step(step=step)
            optimizer.step()
            objective.after_step(step=step)


def held_batches(built: Any, count: int) -> list[Any]:
    """``count`` batches of the run's own training loader, moved to the device (loader workers then closed)."""
    from dssl.runner import training_batches

    loader = iter(training_batches(built))
    batches = [next(loader).to(built.device) for _ in range(count)]
    del loader
    return batches


def time_engine(built: Any, trainer: Any, batches: list[Any], steps: int) -> float:
    """Seconds per step of ``steps`` engine steps over the held batches (device synchronised at both ends)."""
    trainer.start_step = 0
    trainer.optim = built.config.optim.model_copy(update={"steps": steps})
    _sync(built.device)
    started = time.perf_counter()
    trainer.fit(itertools.cycle(batches))
    _sync(built.device)
    return (time.perf_counter() - started) / steps


def time_bare(built: Any, bare: BareLoop, batches: list[Any], steps: int) -> float:
    _sync(built.device)
    started = time.perf_counter()
    bare.run(batches, steps)
    _sync(built.device)
    return (time.perf_counter() - started) / steps


def crops_text(batch: Any) -> str:
    crops = batch.crops
    n_global = batch.n_global
    locals_ = len(crops) - n_global
    text = f"{n_global}x{crops[0].shape[-1]}"
    return text + (f"+{locals_}x{crops[-1].shape[-1]}" if locals_ else "")


def train_method(
    outcome: Outcome, config: Any, settings: Settings, *, compiled: bool, keep: dict[str, Any] | None
) -> None:
    """Part 1 (eager, engine vs bare loop) or part 4 (compiled, engine only) for one method."""
    import torch
    from dssl.api import build
    from dssl.runner import make_trainer

    device = torch.device("cuda" if settings.device == "cuda" else "cpu")
    reset_peak(device)
    started = time.perf_counter()
    built = build(config)
    batches = held_batches(built, settings.held)
    losses: list[float] = []
    trainer = make_trainer(built, on_metrics=lambda metrics, step: losses.append(metrics["loss"]))
    prepare_s = time.perf_counter() - started
    started = time.perf_counter()
    time_engine(built, trainer, batches, settings.warmup)
    warmup_s = time.perf_counter() - started
    bare = None
    if not compiled:
        bare = ClipAwareBareLoop(built.objective, config.optim, built.device, trainer.amp_dtype)
        time_bare(built, bare, batches, settings.warmup)
    engine_times, bare_times = [], []
    for _ in range(settings.rounds):
        engine_times.append(time_engine(built, trainer, batches, settings.round_steps))
        if bare is not None:
            bare_times.append(time_bare(built, bare, batches, settings.round_steps))
    engine_s = statistics.median(engine_times)
    outcome.figures = {
        "crops": crops_text(batches[0]),
        "images/s": f"{settings.batch_size / engine_s:.1f}",
        "engine ms/step": f"{1000 * engine_s:.1f}",
        "peak memory": peak_memory(device),
        "build s": f"{prepare_s:.1f}",
        "warm-up s": f"{warmup_s:.1f}",
    }
    if bare_times:
        bare_s = statistics.median(bare_times)
        outcome.figures["bare ms/step"] = f"{1000 * bare_s:.1f}"
        outcome.figures["engine/bare"] = f"{engine_s / bare_s:.3f}"
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise RuntimeError(f"no finite loss logged: {losses[-3:]}")
    outcome.figures["loss"] = f"{losses[-1]:.4f}"
    if keep is not None:
        keep["dino"] = built
    del trainer, bare, batches


# --- torchrun ---------------------------------------------------------------------------------------------------


def run_process_group(command: Sequence[str], *, cwd: str, timeout: float) -> tuple[int, str]:
    """Run ``command`` in a session of its own; on a timeout or an interruption (the part's deadline) the whole
    group is killed: killing torchrun alone would leave its worker training on (an orphan)."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, output


def torchrun_part(outcome: Outcome, settings: Settings, threads: int | None) -> None:
    """Part 2: this script as a 1-process torchrun worker; its JSON report is read back.

    The part's deadline interrupts the wait (``subprocess.run`` then kills torchrun); without a budget the
    worker gets 10 minutes.
    """
    with tempfile.TemporaryDirectory(prefix="dssl-acceptance-") as folder:
        report = Path(folder) / "worker.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
            str(Path(__file__).resolve()), "--worker", str(report), "--device", settings.device,
        ]  # fmt: skip
        if settings.tiny:
            command.append("--tiny")
        if threads:
            command += ["--threads", str(threads)]
        returncode, output = run_process_group(command, cwd=folder, timeout=600)
        if returncode != 0 or not report.exists():
            tail = output.strip().splitlines()[-3:]
            raise RuntimeError(f"torchrun exited {returncode}: {' | '.join(tail)}")
        result = json.loads(report.read_text())
    outcome.figures = {key: str(value) for key, value in result.items()}


def worker(report: Path, settings: Settings) -> None:
    """The torchrun worker: join the group, check a collective, train DINO with the real loader, write a report."""
    import torch
    import torch.distributed as dist
    from dssl.api import build
    from dssl.runner import make_trainer, training_batches

    cuda = settings.device == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend)
    try:
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        probe = torch.full((4,), float(dist.get_rank() + 1), device=device)
        dist.all_reduce(probe)
        if probe.tolist() != [float(dist.get_world_size())] * 4:
            raise RuntimeError(f"all_reduce gave {probe.tolist()}")
        steps = settings.torchrun_steps
        config = method_config("dino", (), settings, steps=steps, log_every=max(1, steps // 4))
        built = build(config)
        rates: list[float] = []
        trainer = make_trainer(built, on_metrics=lambda metrics, step: rates.append(metrics["images_per_second"]))
        summary = trainer.fit(training_batches(built))
        report.write_text(
            json.dumps(
                {
                    "backend": dist.get_backend(),
                    "world size": dist.get_world_size(),
                    "steps": summary.steps,
                    "loader workers": config.optim.num_workers,
                    "images/s (last window, with loader)": round(rates[-1], 1),
                    "loss": round(summary.final_metrics.get("loss", float("nan")), 4),
                }
            )
        )
    finally:
        dist.destroy_process_group()


# --- evaluators -------------------------------------------------------------------------------------------------


def eval_part(outcomes: list[Outcome], settings: Settings, keep: dict[str, Any], budget: Budget) -> None:
    """Part 3: the dense evaluators, one outcome each, on the backbone DINO trained in part 1."""
    from dssl.api import build, evaluate_built
    from rich.console import Console

    built = keep.get("dino")
    source = "DINO-trained teacher (part 1)"
    if built is None:
        built = build(method_config("dino", (), settings, **eval_changes(settings)))
        source = "untrained DINO teacher (part 1 did not run or failed)"
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    for name in built.config.evaluators:
        single = built.config.model_copy(
            update={"evaluators": [name], "evaluator_options": {name: built.config.evaluator_options[name]}}
        )
        one = dataclasses.replace(built, config=single)

        def body(outcome: Outcome, one: Any = one) -> None:
            reset_peak(one.device)
            (result,) = evaluate_built(one, console=quiet)
            metric = next(iter(result.metrics.values()), None)
            outcome.figures = {
                "protocol": result.protocol_id,
                "metric": f"{next(iter(result.metrics))} = {metric.value:.2f}" if metric is not None else "-",
                "peak memory": peak_memory(one.device),
                "features": source,
            }

        outcomes.append(run_part(Outcome("eval", name), budget, PART_CAPS_S["eval"], body))


# --- report -----------------------------------------------------------------------------------------------------


COLUMNS = ("crops", "images/s", "engine ms/step", "bare ms/step", "engine/bare", "peak memory", "warm-up s")


def device_name(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    from machine import cpu_model

    return f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)"


def other_figures(outcome: Outcome) -> str:
    return ", ".join(f"{k} {v}" for k, v in outcome.figures.items() if k not in COLUMNS)


def print_summary(outcomes: list[Outcome], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("part", "name", "status", "s", "cpu s", *COLUMNS, "other"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        status = o.status if not o.failed else f"[red]{o.status}[/red]"
        other = other_figures(o) + (f" [red]{o.detail}[/red]" if o.detail else "")
        figures = (o.figures.get(c, "") for c in COLUMNS)
        table.add_row(o.part, o.name, status, f"{o.seconds:.1f}", f"{o.cpu_seconds:.1f}", *figures, other)
    Console(width=200).print(table)


def markdown_table(outcomes: list[Outcome]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "/")

    header = ["part", "name", "status", "s", "cpu s", *COLUMNS, "other"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for o in outcomes:
        other = other_figures(o) + (f" — {o.detail}" if o.detail else "")
        row = [o.part, o.name, o.status, f"{o.seconds:.1f}", f"{o.cpu_seconds:.1f}"]
        row += [*(o.figures.get(c, "") for c in COLUMNS), other]
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def append_results(
    path: Path, outcomes: list[Outcome], settings: Settings, total_s: float, machine: str | None = None
) -> None:
    """Append a ``## GPU acceptance run on DEVICE (date)`` section: machine, command, settings, totals, the table.

    Args:
        machine: The machine line taken when the run started (its load average); default: taken now.
    """
    failed = sum(o.failed for o in outcomes)
    mode = "tiny CPU smoke (--tiny)" if settings.tiny else "acceptance"
    body = [
        machine or machine_line(device=settings.device),
        f"Device: {device_name(settings.device)}.",
        f"Command: `{command_line()}`",
        f"Mode: {mode}; backbone {settings.backbone}, training images rendered at {settings.image_size} px, batch "
        f"{settings.batch_size}, {settings.held} held batches, warm-up {settings.warmup} steps, {settings.rounds} "
        f"rounds of {settings.round_steps} steps; eval sets {settings.eval_train}/{settings.eval_val} images at "
        f"{settings.eval_size} px.",
        f"Total wall time {total_s:.0f} s, CPU time of this process {time.process_time():.0f} s; "
        f"{len(outcomes) - failed} of {len(outcomes)} parts ok.",
        "Columns: s = wall seconds of the part, cpu s = CPU seconds of this process in it (the torchrun worker, "
        "loader workers and inductor's compile workers are other processes); images/s = batch / median engine "
        "ms/step over held batches (no data loading); engine/bare = ratio of the median ms/step; peak memory = "
        "torch.cuda.max_memory_allocated since the run was built (CPU: peak RSS of the process so far).",
        *(
            ["Taken on a shared machine: wall times include the load of other processes (load average above)."]
            if settings.device == "cpu"
            else []
        ),
        "",
        markdown_table(outcomes),
    ]
    date = time.strftime("%Y-%m-%d", time.gmtime())
    with path.open("a") as handle:
        handle.write(f"\n## GPU acceptance run on {device_name(settings.device)} ({date})\n\n" + "\n".join(body) + "\n")


# --- main -------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    parser.add_argument("--tiny", action="store_true", help="tiny backbone, crops and eval sets (CPU test)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--methods", default=",".join(m[0] for m in METHODS), help="comma-separated method labels")
    parser.add_argument("--compile-methods", help="methods of part 4 (default: all; --tiny: none)")
    parser.add_argument("--budget-s", type=float, help=f"total time budget (default {DEFAULT_BUDGET_S:.0f} on cuda)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--no-append", action="store_true", help="do not append a section to RESULTS.md")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def selected(args: argparse.Namespace) -> tuple[list[str], list[tuple[str, str, tuple[str, ...]]], list[str]]:
    """The parts, methods and compiled methods asked for; raises ``SystemExit(2)`` naming an unknown one."""
    parts = [p for p in args.parts.split(",") if p]
    labels = [m for m in args.methods.split(",") if m]
    # Inductor on a CPU compiles even the tiny DINO for minutes (module docstring): --tiny compiles nothing unless
    # asked (--compile-methods dino).
    default = "" if args.tiny else ",".join(labels)
    compiled = [m for m in (args.compile_methods if args.compile_methods is not None else default).split(",") if m]
    unknown = sorted(set(parts) - set(PARTS)) + sorted(set(labels + compiled) - {m[0] for m in METHODS})
    if unknown:
        print(f"unknown part or method: {', '.join(unknown)}", file=sys.stderr)
        raise SystemExit(2)
    return parts, [m for m in METHODS if m[0] in labels], compiled


def run_all(args: argparse.Namespace, settings: Settings, budget: Budget) -> list[Outcome]:
    """Every selected part in order (train, torchrun, eval, compile); one outcome per method, run or evaluator."""
    parts, methods, compiled = selected(args)
    outcomes: list[Outcome] = []
    keep: dict[str, Any] = {}  # DINO's trained run, for the evaluators

    def trained(label: str, objective: str, extra: Sequence[str], compile_: bool) -> Callable[[Outcome], None]:
        def body(outcome: Outcome) -> None:
            with_eval = label == "dino" and not compile_
            changes = eval_changes(settings) if with_eval else {"evaluators": []}
            config = method_config(objective, extra, settings, compile=compile_, **changes)
            train_method(outcome, config, settings, compiled=compile_, keep=keep if with_eval else None)

        return body

    if "train" in parts:
        for label, objective, extra in methods:
            body = trained(label, objective, extra, False)
            outcomes.append(run_part(Outcome("train", label), budget, PART_CAPS_S["train"], body))
    if "torchrun" in parts:
        body = functools.partial(torchrun_part, settings=settings, threads=args.threads)
        outcomes.append(run_part(Outcome("torchrun", "dino 1-process"), budget, PART_CAPS_S["torchrun"], body))
    if "eval" in parts:
        eval_part(outcomes, settings, keep, budget)
    keep.clear()
    if "compile" in parts:
        for label, objective, extra in methods:
            if label in compiled:
                body = trained(label, objective, extra, True)
                outcomes.append(run_part(Outcome("compile", label), budget, PART_CAPS_S["compile"], body))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_for(args.device, args.tiny)
    if args.worker is not None:
        worker(args.worker, settings)
        return 0
    machine = machine_line(args.threads, args.device)  # the load average before this run adds to it
    budget = Budget(args.budget_s if args.budget_s else (DEFAULT_BUDGET_S if args.device == "cuda" else None))
    print(f"device: {device_name(args.device)}", flush=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAILED: --device cuda but no CUDA device is available", file=sys.stderr)
        return 1
    outcomes = run_all(args, settings, budget)
    total = budget.elapsed()
    failed = [o for o in outcomes if o.failed]
    title = (
        f"dssl GPU acceptance on {device_name(args.device)}: {len(outcomes) - len(failed)}/{len(outcomes)} ok "
        f"in {total:.0f} s" + (f" (budget {budget.total_s:.0f} s)" if budget.total_s else "")
    )
    print_summary(outcomes, title)
    if not args.no_append:
        append_results(args.results, outcomes, settings, total, machine)
        print(f"appended to {args.results}")
    if failed:
        print(f"FAILED: {', '.join(f'{o.part}/{o.name}' for o in failed)}")
        return 1
    print("ACCEPTANCE OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
