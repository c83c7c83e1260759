"""benchmarks/cpu_track_targets.py reads warm-start runs and measured supervised ceilings as documented: target 1
for a warm-start schedule is judged per seed against the random init that seed started from."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.benchmark_scripts import load_benchmark_script


def load_script() -> ModuleType:
    return load_benchmark_script("cpu_track_targets.py", "cpu_track_targets")


def write_warm_start(path: Path, *, seed: int, steps: int, start: float, final: float, lr: float = 0.002) -> Path:
    curve = [
        {"step": 0, "loss": None, "linear_seg/miou": start},
        {"step": steps // 2, "loss": 8.0, "linear_seg/miou": (start + final) / 2},
        {"step": steps, "loss": 7.5, "linear_seg/miou": final},
    ]
    recipe = (
        f"python benchmarks/warm_start.py --config warm-start.yaml --seed {seed} --threads {seed + 1} "
        f"--set optim.steps={steps} --set optim.lr={lr}"
    )
    run = {"recipe": recipe, "seed": seed, "steps": steps, "fingerprint": f"f{seed}", "learning_curve": curve}
    path.write_text(json.dumps(run))
    return path


def test_warm_start_target_against_each_seeds_random_init_and_its_ceiling(tmp_path: Path) -> None:
    script = load_script()
    paths = [
        write_warm_start(tmp_path / f"s{seed}.json", seed=seed, steps=600, start=start, final=final)
        for seed, start, final in ((2, 5.0, 12.0), (0, 4.0, 10.0), (1, 6.0, 11.0))
    ]
    ceilings = tmp_path / "ceilings.jsonl"
    rows = [(1, 600, 45.0), (0, 600, 44.0), (2, 600, 46.0), (0, 20, 9.0)]
    ceilings.write_text("".join(json.dumps({"seed": s, "steps": n, "supervised/linear_seg/miou": v}) + "\n"
                                for s, n, v in rows))  # fmt: skip

    runs = script._load_warm_starts(paths)
    measured = script._load_ceiling_rows(ceilings)
    lines = script._warm_start_report(runs, script.Ceiling(600, measured[600]))

    assert [run["seed"] for run in runs] == [0, 1, 2]
    assert measured == {600: [44.0, 45.0, 46.0], 20: [9.0]}
    # by hand: starts 4, 6, 5 (mean 5, std 1); finals 10, 11, 12 (mean 11, std 1); gain 6 = 6x the std;
    # ceiling mean 45, gap 45 - 5 = 40, share 6 / 40 = 15 %
    assert "(seeds 0, 1, 2; `--config warm-start.yaml --set optim.steps=600 --set optim.lr=0.002`)" in lines[0]
    assert "11.00 ± 1.00 vs 5.00 ± 1.00 | +6.00 | 6.0× | ≥ 3 points and ≥ 4× | yes |" in lines[0]
    assert "supervised 45.00 ± 1.00 (3 seeds) | 15% of 40.00 | — | ≥ 25 % | no |" in lines[1]


def test_warm_starts_of_different_schedules_recipes_or_repeated_seeds_are_refused(tmp_path: Path) -> None:
    script = load_script()
    a = write_warm_start(tmp_path / "a.json", seed=0, steps=600, start=5.0, final=9.0)
    b = write_warm_start(tmp_path / "b.json", seed=1, steps=2000, start=5.0, final=9.0)
    c = write_warm_start(tmp_path / "c.json", seed=0, steps=600, start=5.0, final=9.0)
    with pytest.raises(SystemExit, match="mix schedules"):
        script._load_warm_starts([a, b])
    with pytest.raises(SystemExit, match="one file per seed"):
        script._load_warm_starts([a, c])
    d = write_warm_start(tmp_path / "d.json", seed=1, steps=600, start=5.0, final=9.0, lr=0.008)
    with pytest.raises(SystemExit, match="mix recipes"):
        script._load_warm_starts([a, d])


def test_a_warm_start_without_the_metric_at_step_0_is_refused(tmp_path: Path) -> None:
    script = load_script()
    path = write_warm_start(tmp_path / "a.json", seed=0, steps=600, start=5.0, final=9.0)
    run = json.loads(path.read_text())
    del run["learning_curve"][0]["linear_seg/miou"]
    path.write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="no linear_seg/miou at step 0"):
        script._load_warm_starts([path])


def test_a_ceiling_of_fewer_steps_bounds_the_share_and_never_says_met() -> None:
    script = load_script()
    exact = script._share_row("dino", 6.0, 5.0, 2200, script.Ceiling(2200, [44.0, 45.0, 46.0]))
    assert "supervised 45.00 ± 1.00 (3 seeds) | 15% of 40.00 | — | ≥ 25 % | no |" in exact
    # 2000 steps standing in for 2200: the ceiling is a lower bound, so 15 % is an upper bound of the share.
    bound = script._share_row("dino", 6.0, 5.0, 2200, script.Ceiling(2000, [44.0, 45.0, 46.0]))
    assert "| dino: share of the supervised gap at 2200 steps | supervised 45.00 ± 1.00 at 2000 steps" in bound
    assert "≤ 15% of 40.00 | — | ≥ 25 % | no |" in bound
    # An upper bound of 30 % does not show that 25 % is reached.
    unknown = script._share_row("dino", 12.0, 5.0, 2200, script.Ceiling(2000, [44.0, 45.0, 46.0]))
    assert "≤ 30% of 40.00 | — | ≥ 25 % | not known (measure the ceiling) |" in unknown
    met = script._share_row("dino", 12.0, 5.0, 2200, script.Ceiling(2200, [44.0, 45.0, 46.0]))
    assert met.endswith("| 30% of 40.00 | — | ≥ 25 % | yes |")


def test_the_committed_ceilings_cover_seeds_0_to_2_at_the_tracks_step_counts() -> None:
    script = load_script()
    measured = script._load_ceiling_rows(script.CEILING_ROWS)
    assert sorted(measured) == [200, 2000, 6000]
    assert all(len(values) == 3 for values in measured.values())
    # Each ceiling grows with steps (what lets a ceiling of fewer steps stand in as a lower bound).
    means = [sum(measured[n]) / 3 for n in sorted(measured)]
    assert means == sorted(means)


def test_the_registry_ceilings_are_the_means_of_the_committed_measurements() -> None:
    """registry.yaml's supervised ceilings of the CPU track (what the main job prints) are the seed means of the
    rows committed in benchmarks/cpu-track/supervised-ceilings.jsonl, one reference per measured step count."""
    from dssl.catalogue import SUPERVISED_CEILING, load_catalogue

    script = load_script()
    measured = script._load_ceiling_rows(script.CEILING_ROWS)
    references = {
        r.steps: r.value
        for r in load_catalogue().references
        if r.method == SUPERVISED_CEILING
        and (r.backbone, r.dataset, r.protocol) == ("vit_cpu8", "embedded", "linear_seg@1")
        and r.metric == "linear_seg/miou"
    }
    assert sorted(references) == sorted(measured)
    for steps, values in measured.items():
        assert references[steps] == pytest.approx(sum(values) / len(values), abs=0.005), f"{steps} steps"
