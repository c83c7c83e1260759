"""ADE20K (both label conventions) and Cityscapes (labelIds -> train ids) on tiny real-format folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dssl.data import fixtures
from dssl.data.ade20k import CLASSES_150, build_ade20k
from dssl.data.ade20k_config import ADE20KOptions
from dssl.data.cityscapes import CLASS_NAMES, LABEL_TO_TRAIN, build_cityscapes
from dssl.data.cityscapes_config import CityscapesOptions
from dssl.errors import ConfigError
from PIL import Image


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ade20k_hbird_convention_keeps_151_ids_and_ignores_0(tmp_path):
    root = fixtures.write_ade20k(tmp_path)
    ds = build_ade20k(ADE20KOptions(), split="train", data_root=root)
    assert (len(ds), ds.num_classes, ds.ignore_index) == (3, 151, 0)
    assert ds.class_names[0] == "other" and ds.class_names[1] == "wall" and ds.class_names[150] == "flag"
    mask = ds[0]["mask"]
    assert int(mask[20, 5]) == 1 and int(mask[20, 40]) == 150 and int(mask[0, 0]) == 0
    assert len(build_ade20k(ADE20KOptions(), split="val", data_root=root)) == 2


def test_ade20k_reduce_zero_label_is_the_mmseg_convention(tmp_path):
    root = fixtures.write_ade20k(tmp_path)
    ds = build_ade20k(ADE20KOptions(reduce_zero_label=True), split="train", data_root=root)
    assert (ds.num_classes, ds.ignore_index, ds.class_names) == (150, 255, CLASSES_150)
    mask = ds[0]["mask"]
    assert int(mask[20, 5]) == 0 and int(mask[20, 40]) == 149 and int(mask[0, 0]) == 255
    assert ds.class_names[int(mask[20, 5])] == "wall"


def test_ade20k_missing_annotations(tmp_path):
    root = fixtures.write_ade20k(tmp_path)
    (root / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png").unlink()
    ds = build_ade20k(ADE20KOptions(), split="val", data_root=root)
    with pytest.raises(ConfigError, match=r"ade20k: expected the mask .*ADE_val_00000001.png"):
        ds[0]
    with pytest.raises(ConfigError, match=r"ade20k: expected .*images/testing with .jpg images"):
        build_ade20k(ADE20KOptions(val_split="testing"), split="val", data_root=root)


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    root = fixtures.write_cityscapes(tmp_path)
    ds = build_cityscapes(CityscapesOptions(), split="train", data_root=root)
    assert (len(ds), ds.num_classes, ds.ignore_index, len(ds.class_names)) == (3, 19, 255, 19)
    first = ds[0]["mask"]  # aachen: road (7) | car (26), corner unlabelled (0)
    assert int(first[20, 5]) == CLASS_NAMES.index("road") == 0
    assert int(first[20, 40]) == CLASS_NAMES.index("car") == 13
    assert int(first[0, 0]) == 255
    assert int(ds[1]["mask"][20, 40]) == CLASS_NAMES.index("bicycle") == 18  # bonn, labelId 33
    # labelIds that are void or not evaluated (e.g. 0..6, 9 parking, 10 rail track, 29 caravan) are ignored.
    assert all(LABEL_TO_TRAIN[i] == 255 for i in (*range(7), 9, 10, 14, 15, 16, 18, 29, 30))
    assert sorted(int(v) for v in LABEL_TO_TRAIN if v != 255) == list(range(19))


def test_cityscapes_missing_label_file(tmp_path):
    root = fixtures.write_cityscapes(tmp_path)
    label = next((root / "cityscapes/gtFine/val").rglob("*_labelIds.png"))
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(label)
    ds = build_cityscapes(CityscapesOptions(), split="val", data_root=root)
    with pytest.raises(ConfigError, match=r"mask of .* is 4x4, image is 48x40"):
        [ds[i] for i in range(len(ds))]
    for path in (root / "cityscapes/leftImg8bit/val").rglob("*.png"):
        path.unlink()
    with pytest.raises(ConfigError, match=r"cityscapes: expected <city>/\*_leftImg8bit.png images in"):
        build_cityscapes(CityscapesOptions(), split="val", data_root=root)


def test_cityscapes_train_ids_equal_cityscapesscripts_labels():
    """The labelId -> trainId table and the class names are the owner's (cityscapesScripts helpers/labels.py)."""
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    owner = np.full(256, 255, dtype=np.int64)
    names = {}
    for label in labels.labels:
        if 0 <= label.id < 256 and label.trainId not in (255, -1):
            owner[label.id] = label.trainId
            names[label.trainId] = label.name
    np.testing.assert_array_equal(LABEL_TO_TRAIN, owner)
    assert tuple(names[i] for i in range(len(names))) == CLASS_NAMES
