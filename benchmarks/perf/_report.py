"""Shared bits of the perf scripts: machine facts, medians, the RESULTS.md section writer."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import cpu_model  # noqa: E402


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (``nan`` when empty)."""
    return statistics.median(values) if values else float("nan")


def machine_line(threads: int | None = None, device: str = "cpu") -> str:
    """One line: CPU model, core count, load average, torch threads and device, Python and torch versions."""
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    gpu = ""
    if device == "cuda" and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name()}"
    shown_threads = threads if threads is not None else torch.get_num_threads()
    return (
        f"Machine: {cpu_model()} ({os.cpu_count()} logical CPUs, load average {load} at start){gpu}; "
        f"{shown_threads} torch thread(s); Python {platform.python_version()}, torch {torch.__version__}."
    )


def shown_path(path: Path) -> str:
    """``path`` as a command from the repository root writes it: relative to the repository when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    return " ".join(["python", shown_path(Path(sys.argv[0])), *sys.argv[1:]])


def append_section(
    title: str, *, details: Sequence[str], table: str, threads: int | None = None, device: str = "cpu"
) -> Path:
    """Append ``## title (date)`` to benchmarks/RESULTS.md: the machine, the command, ``details``, then ``table``.

    Args:
        title: Section title; the UTC date is added.
        details: Lines saying what was measured and how (settings, what each column means).
        table: The markdown table of figures.
        threads: Torch threads to report (default: the current setting).
        device: The device measured on (``cuda`` adds the GPU's name).

    Returns:
        The path of RESULTS.md.
    """
    body = "\n".join([machine_line(threads, device), f"Command: `{command_line()}`", *details, "", table])
    date = time.strftime("%Y-%m-%d", time.gmtime())
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results (dssl)\n")
    with RESULTS.open("a") as handle:
        handle.write(f"\n## {title} ({date})\n\n{body.rstrip()}\n")
    return RESULTS
