"""Odd files in real image folders: every PIL mode loads as 8-bit RGB; unreadable files are skipped or stop the run."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from dssl import api
from dssl.cli.main import cli
from dssl.data import fixtures
from dssl.data.files import load_rgb
from dssl.engine.loader import ViewDataset, read_bad_images
from dssl.errors import BadImageError
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _png16_rgb(path: Path, rgb: tuple[int, int, int]) -> None:
    """A 48-bit (16 bits per channel) RGB PNG, which PIL cannot write itself."""
    height, width = 8, 8
    row = b"\x00" + np.array([rgb] * width, dtype=">u2").tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def write_odd_images(folder: Path) -> dict[str, tuple[int, int, int] | None]:
    """One file per odd case; the value is the RGB every pixel must load as (``None``: unreadable)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 77).save(folder / "grey.png")
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([255, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    palette.save(folder / "palette.png")
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    transparent.save(folder / "palette_transparency.png", transparency=0)
    Image.new("RGBA", (8, 8), (20, 40, 60, 0)).save(folder / "rgba.png")
    Image.new("LA", (8, 8), (90, 128)).save(folder / "grey_alpha.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=100)
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(folder / "grey16.png")
    _png16_rgb(folder / "rgb16.png", (65535, 32768, 256))
    _truncated_jpeg(folder / "truncated.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    return {
        "grey.png": (77, 77, 77),
        "palette.png": (10, 200, 30),
        "palette_transparency.png": (10, 200, 30),
        "rgba.png": (20, 40, 60),  # alpha is dropped, the colour kept (torchvision's loader does the same)
        "grey_alpha.png": (90, 90, 90),
        "cmyk.jpg": (255, 0, 0),
        "grey16.png": (128, 128, 128),  # scaled to 8 bits, not clipped to white
        "rgb16.png": (255, 128, 1),
        "truncated.jpg": None,
        "empty.jpg": None,
    }


def test_every_mode_loads_as_8_bit_rgb_and_unreadable_files_name_themselves(tmp_path: Path) -> None:
    for name, expected in write_odd_images(tmp_path).items():
        if expected is None:
            with pytest.raises(BadImageError, match=f"cannot read image {tmp_path / name}: "):
                load_rgb(tmp_path / name)
            continue
        image = load_rgb(tmp_path / name)
        assert image.mode == "RGB", name
        pixels = np.asarray(image).reshape(-1, 3)
        assert np.abs(pixels.astype(int) - expected).max() <= 2, (name, pixels[0])  # JPEG rounding


class _Images(torch.utils.data.Dataset):
    """Items ``{"image": value}``; ``None`` values are unreadable files."""

    def __init__(self, values: list[float | None]) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.values[index] is None:
            raise BadImageError(f"img{index}.jpg", "image file is truncated")
        return {"image": self.values[index]}


def test_skip_replaces_an_unreadable_image_by_the_next_readable_one_and_logs_it_once(tmp_path: Path) -> None:
    log = tmp_path / "bad_images.txt"
    identity = lambda image, generator: image  # noqa: E731
    views = ViewDataset(_Images([0.0, None, None, 3.0]), identity, 0, bad_images="skip", bad_images_log=log)
    assert [views[(i, i)] for i in range(4)] == [0.0, 3.0, 3.0, 3.0]
    assert views[(1, 9)] == 3.0  # the same draw again: the same replacement, no new decoding attempt
    assert read_bad_images(log) == {"img1.jpg": "image file is truncated", "img2.jpg": "image file is truncated"}
    assert log.read_text().count("\n") == 2

    strict = ViewDataset(_Images([0.0, None]), identity, 0, bad_images="error")
    with pytest.raises(BadImageError, match=r"img1\.jpg: image file is truncated \(dataset\.bad_images=skip"):
        strict[(1, 0)]


def _imagefolder_run(tmp_path: Path, **dataset: Any) -> Path:
    """8 readable images of every mode plus a truncated and an empty file; 4 steps of 4 draw all 10."""
    train = tmp_path / "data" / "imagefolder" / "train"
    write_odd_images(train)
    config = {
        "device": "cpu",
        "preset": "cpu",
        "objective": {"name": "dino", "options": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}},
        "dataset": {"name": "imagefolder", "options": {"size": 32}} | dataset,
        "eval_dataset": {"name": "embedded", "options": {"size": 32, "num_train": 16, "num_val": 8}},
        "augmentation": {"options": {"global_size": 32, "local_size": 16, "n_local": 2}},
        "evaluators": ["kmeans_seg"],
        "evaluator_options": {"kmeans_seg": {"seeds": [0], "n_init": 1}},
        "optim": {"steps": 4, "batch_size": 4, "warmup_steps": 1},
        "log_every": 1,
        "data_root": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "runs"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "images"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(api.resolve(config).to_dict(), sort_keys=False))
    return path


def _only_run(tmp_path: Path) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("images").experiment_id])
    return run


def test_training_skips_unreadable_images_by_default_and_reports_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "--config", str(_imagefolder_run(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "skipped 2 unreadable training images" in result.output
    run = _only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["dssl.bad_images"] == "2"
    assert sorted(run.data.tags["dssl.bad_images.first"].split(", ")) == ["empty.jpg", "truncated.jpg"]
    (log,) = (tmp_path / "runs").glob("*/*/bad_images.txt")
    assert sorted(Path(p).name for p in read_bad_images(log)) == ["empty.jpg", "truncated.jpg"]
    from mlflow import MlflowClient

    artifacts = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(run.info.run_id)
    assert "bad_images.txt" in {a.path for a in artifacts}


def test_bad_images_error_stops_training_naming_the_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "--config", str(_imagefolder_run(tmp_path, bad_images="error"))])
    assert result.exit_code == 2
    assert "cannot read image " in result.output and ("truncated.jpg" in result.output or "empty.jpg" in result.output)
    assert _only_run(tmp_path).info.status == "FAILED"


def test_evaluation_stops_at_an_unreadable_image_and_never_skips(tmp_path: Path) -> None:
    root = fixtures.write_image_mask_folder(tmp_path / "data")
    (broken,) = sorted((root / "image_mask_folder" / "val" / "images").iterdir())[:1]
    _truncated_jpeg(broken)
    sets = [
        "dataset.options.num_classes=3",
        "dataset.options.size=32",
        "eval_dataset=null",  # the evaluators use the training dataset's splits, whose val split holds the file
        "objective.options.out_dim=64",
        "augmentation.options.global_size=32",
        "augmentation.options.local_size=16",
        "augmentation.options.n_local=2",
        "evaluator_options.kmeans_seg.n_init=1",
        f"output_dir={tmp_path / 'runs'}",
    ]
    args = ["bench", "--dataset", "image_mask_folder", "--data-root", str(root), "--steps", "1", "--batch-size", "2"]
    args += ["--eval", "kmeans_seg", "--no-tracking", *(f"--set={s}" for s in sets)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and f"cannot read image {broken}" in result.output  # training skipped nothing

    skip = ["bench", "--set", "eval_dataset.name=embedded", "--set", "eval_dataset.bad_images=skip", "--dry-run"]
    refused = CliRunner().invoke(cli, skip)
    assert refused.exit_code == 2 and "eval_dataset.bad_images: evaluation never replaces an image" in refused.output
