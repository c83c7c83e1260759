"""Start-up time of the ``dssl`` CLI against the floor of its own dependencies, and a no-torch check.

Usage::

    python benchmarks/perf/cli_startup.py                   # 15 interleaved repeats of each command
    python benchmarks/perf/cli_startup.py --repeats 2 --no-append   # smoke

Commands, each a fresh subprocess of this interpreter (so the same virtualenv), run in interleaved order
(baseline, ``--help``, ``plugins``, baseline, ...) so that load on a shared machine hits them alike:

* baseline: ``python -c "import click, rich"`` (what any click + rich CLI pays);
* ``python -m dssl --help``;
* ``python -m dssl plugins``.

Reported: the median wall time of each and its ratio to the baseline. Then ``dssl plugins`` runs once more
under a small ``-c`` wrapper that prints whether ``torch`` (or any ``torch.*`` module) is in ``sys.modules``
at exit: listing plugins must not import torch. ``--no-append`` keeps benchmarks/RESULTS.md unchanged.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section, median

COMMANDS: dict[str, list[str]] = {
    'python -c "import click, rich"': ["-c", "import click, rich"],
    "dssl --help": ["-m", "dssl", "--help"],
    "dssl plugins": ["-m", "dssl", "plugins"],
}

#: Runs ``dssl plugins`` in-process, then reports the torch modules it left in ``sys.modules``.
_TORCH_PROBE = """
import contextlib, runpy, sys
sys.argv = ["dssl", "plugins"]
try:
    with contextlib.suppress(SystemExit):
        runpy.run_module("dssl", run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    sys.stderr.write("TORCH_MODULES=%d %s\\n" % (len(loaded), ",".join(loaded[:5])))
"""


def time_command(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one subprocess run of this interpreter with ``argv`` (output discarded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def torch_modules_after_plugins(env: dict[str, str]) -> tuple[int, str]:
    """(number of torch modules imported by ``dssl plugins``, the first few names)."""
    proc = subprocess.run([sys.executable, "-c", _TORCH_PROBE], capture_output=True, text=True, env=env, check=True)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("TORCH_MODULES="))
    count, _, names = line.removeprefix("TORCH_MODULES=").partition(" ")
    return int(count), names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="runs of each command (interleaved)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (file cache)")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    env = dict(os.environ, COLUMNS="100")
    for _ in range(args.warmup):
        for argv in COMMANDS.values():
            time_command(argv, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            times[name].append(time_command(argv, env))
    torch_count, torch_names = torch_modules_after_plugins(env)

    baseline_name = next(iter(COMMANDS))
    baseline = median(times[baseline_name])
    lines = ["| command | median (ms) | min (ms) | max (ms) | × baseline |", "|---|---|---|---|---|"]
    for name, values in times.items():
        ms = 1000 * median(values)
        lines.append(
            f"| `{name}` | {ms:.0f} | {1000 * min(values):.0f} | {1000 * max(values):.0f} | "
            f"{median(values) / baseline:.2f} |"
        )
    verdict = (
        "no torch module imported" if torch_count == 0 else f"{torch_count} torch modules imported ({torch_names})"
    )
    lines += ["", f"`dssl plugins` torch check: **{verdict}**."]
    table = "\n".join(lines)
    settings = (
        f"{args.repeats} interleaved repeats after {args.warmup} warm-up run(s) of each; subprocesses of "
        f"{sys.executable} (dssl commands as `python -m dssl`)."
    )
    print(settings)
    print(table)
    if not args.no_append:
        print(f"appended to {append_section('CLI start-up', details=[f'Settings: {settings}'], table=table)}")
    if torch_count:
        sys.exit(1)


if __name__ == "__main__":
    main()
