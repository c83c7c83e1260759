"""Tiny datasets written in the real on-disk formats, for tests and the conformance suite.

Each ``write_<dataset>(data_root)`` writes that dataset's standard folder under ``data_root`` (a few
48x40 images per split with masks of known content) and returns ``data_root``, so
``build(options, split=..., data_root=write_x(tmp))`` works with default options. The registry
metadata ``test_fixture="dssl.data.fixtures:write_<dataset>"`` names the writer of each file dataset.

Known content (row, column) of every mask, at the native 40x48 (H x W) size:

* left half (columns < 24) holds one class, right half another; image ``i`` shifts the classes;
* the top-left 4x4 corner is the dataset's "unlabelled" value;
* images are flat colours per half, so a resize keeps the halves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 40, 48
SPLIT_SIZES = {"train": 3, "val": 2}


def _save_rgb(path: Path, left: int, right: int) -> None:
    from PIL import Image

    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, : WIDTH // 2] = (37 * left) % 256, 80, 200
    image[:, WIDTH // 2 :] = 200, (53 * right) % 256, 60
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def halves(left: int, right: int, corner: int) -> np.ndarray:
    """The ``(H, W)`` label map of the fixtures: ``left`` | ``right`` halves, ``corner`` in the top-left 4x4."""
    mask = np.empty((HEIGHT, WIDTH), dtype=np.int64)
    mask[:, : WIDTH // 2] = left
    mask[:, WIDTH // 2 :] = right
    mask[:4, :4] = corner
    return mask


def _save_label(path: Path, mask: np.ndarray, palette: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette(voc_palette())
    image.save(path)


def voc_palette() -> list[int]:
    """The Pascal VOC colour map (bit-interleaved), flat ``[r0, g0, b0, r1, ...]`` for 256 entries."""
    colours = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours += [r, g, b]
    return colours


# ------------------------------------------------------------------------------------------- VOC


def voc_classes(split: str, i: int) -> tuple[int, int]:
    """(left, right) VOC classes of fixture image ``i`` of ``split``: background | class 1 + i (+ 10 for val)."""
    return 0, 1 + i + (10 if split == "val" else 0)


def write_voc2012(data_root: Path, *, trainaug: bool = False, aug_masks: bool = False) -> Path:
    """``VOCdevkit/VOC2012`` with palette PNGs (255 boundary corner); optionally trainaug + SegmentationClassAug."""
    root = Path(data_root) / "VOCdevkit" / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    ids = {}
    for split, n in SPLIT_SIZES.items():
        ids[split] = [f"2007_{split}{i:03d}" for i in range(n)]
        for i, stem in enumerate(ids[split]):
            left, right = voc_classes(split, i)
            _save_rgb(root / "JPEGImages" / f"{stem}.jpg", left, right)
            _save_label(root / "SegmentationClass" / f"{stem}.png", halves(left, right, 255), palette=True)
        (sets / f"{split}.txt").write_text("\n".join(ids[split]) + "\n")
    if trainaug:
        extra = "2008_aug000"
        _save_rgb(root / "JPEGImages" / f"{extra}.jpg", 0, 20)
        (sets / "trainaug.txt").write_text("\n".join([*ids["train"], extra]) + "\n")
        if aug_masks:
            for split in SPLIT_SIZES:
                for i, stem in enumerate(ids[split]):
                    left, right = voc_classes(split, i)
                    _save_label(root / "SegmentationClassAug" / f"{stem}.png", halves(left, right, 255))
            _save_label(root / "SegmentationClassAug" / f"{extra}.png", halves(0, 20, 255))
    return Path(data_root)


# ------------------------------------------------------------------------------------------ ADE20K


def write_ade20k(data_root: Path) -> Path:
    """``ADEChallengeData2016``: left half class 1 (wall), right half 150 (flag) or 3 + i, corner 0 (other)."""
    root = Path(data_root) / "ADEChallengeData2016"
    for split, sub in (("train", "training"), ("val", "validation")):
        for i in range(SPLIT_SIZES[split]):
            stem = f"ADE_{split}_{i + 1:08d}"
            right = 150 if i == 0 else 3 + i
            _save_rgb(root / "images" / sub / f"{stem}.jpg", 1, right)
            _save_label(root / "annotations" / sub / f"{stem}.png", halves(1, right, 0))
    return Path(data_root)


# -------------------------------------------------------------------------------------- Cityscapes


def write_cityscapes(data_root: Path) -> Path:
    """``cityscapes``: labelIds 7 (road) | 26 (car) or 33 (bicycle), corner 0 (unlabelled)."""
    root = Path(data_root) / "cityscapes"
    for split, n in SPLIT_SIZES.items():
        for i in range(n):
            city = "aachen" if i % 2 == 0 else "bonn"
            stem = f"{city}_{i:06d}_000019"
            right = 26 if i == 0 else 33
            _save_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 7, right)
            _save_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", halves(7, right, 0))
    return Path(data_root)


# ------------------------------------------------------------------------------- image + mask folder


def write_image_mask_folder(data_root: Path) -> Path:
    """``image_mask_folder``: classes 0 | 1 + i % 2 (3 classes), corner 255; PNG images in train, JPEG in val."""
    root = Path(data_root) / "image_mask_folder"
    for split, n in SPLIT_SIZES.items():
        suffix = ".png" if split == "train" else ".jpg"
        for i in range(n):
            right = 1 + i % 2
            _save_rgb(root / split / "images" / f"img{i:02d}{suffix}", 0, right)
            _save_label(root / split / "masks" / f"img{i:02d}.png", halves(0, right, 255))
    return Path(data_root)


# ------------------------------------------------------------------------------------- ImageFolder


def write_imagefolder(data_root: Path) -> Path:
    """``imagefolder/{train,val}/{cat,dog}/*.jpg``: two images per class in train, one in val."""
    root = Path(data_root) / "imagefolder"
    for split, per_class in (("train", 2), ("val", 1)):
        for c, name in enumerate(("cat", "dog")):
            for i in range(per_class):
                _save_rgb(root / split / name / f"{name}{i}.jpg", c, c)
    return Path(data_root)


# -------------------------------------------------------------------------------------------- COCO

#: Categories of the fixture instances JSON (real COCO ids and supercategories).
COCO_THING_CATEGORIES = (
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
)
#: Categories of the fixture stuff JSON (real COCO-Stuff ids).
COCO_STUFF_CATEGORIES = (
    {"id": 157, "name": "sky-other", "supercategory": "sky"},
    {"id": 124, "name": "grass", "supercategory": "plant"},
    {"id": 183, "name": "other", "supercategory": "other"},
)
#: Where the fixture's regions are, as (row slice, column slice), per image.
COCO_PERSON_BOX = (slice(20, 30), slice(4, 14))  # polygon (person, category 1)
COCO_DOG_BOX = (slice(24, 36), slice(30, 44))  # crowd RLE (dog, category 18)
COCO_CAR_BOX = (slice(26, 34), slice(34, 40))  # small car polygon inside the dog: smaller wins


def _rle(region: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def _box_polygon(box: tuple[slice, slice]) -> list[list[float]]:
    rows, cols = box
    x0, x1, y0, y1 = cols.start, cols.stop, rows.start, rows.stop
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _coco_split(root: Path, split: str, n: int, with_stuff: bool) -> None:
    images, things, stuff = [], [], []
    for i in range(n):
        image_id = 1000 * split.startswith("val") + i + 1
        file_name = f"{image_id:012d}.jpg"
        _save_rgb(root / "images" / split / file_name, 1, 2)
        images.append({"id": image_id, "file_name": file_name, "height": HEIGHT, "width": WIDTH})
        person = np.zeros((HEIGHT, WIDTH), dtype=bool)
        person[COCO_PERSON_BOX] = True
        dog = np.zeros((HEIGHT, WIDTH), dtype=bool)
        dog[COCO_DOG_BOX] = True
        base = 10 * image_id
        things.append(
            {"id": base + 1, "image_id": image_id, "category_id": 1, "segmentation": _box_polygon(COCO_PERSON_BOX),
             "area": float(person.sum()), "bbox": [4, 20, 10, 10], "iscrowd": 0}
        )  # fmt: skip
        things.append(
            {"id": base + 2, "image_id": image_id, "category_id": 18, "segmentation": _rle(dog),
             "area": float(dog.sum()), "bbox": [30, 24, 14, 12], "iscrowd": 1}
        )  # fmt: skip
        things.append(
            {"id": base + 3, "image_id": image_id, "category_id": 3, "segmentation": _box_polygon(COCO_CAR_BOX),
             "area": 48.0, "bbox": [34, 26, 6, 8], "iscrowd": 0}
        )  # fmt: skip
        # Stuff: sky on rows < 16 (except the unlabelled top-left corner), grass on rows >= 16, and
        # "other" (183) over the thing boxes, as COCO-Stuff marks thing pixels.
        sky = np.zeros((HEIGHT, WIDTH), dtype=bool)
        sky[:16] = True
        sky[:4, :4] = False
        other = person | dog
        grass = np.zeros((HEIGHT, WIDTH), dtype=bool)
        grass[16:] = True
        grass &= ~other
        for k, (cat, region) in enumerate(((157, sky), (124, grass), (183, other))):
            stuff.append(
                {"id": base + 5 + k, "image_id": image_id, "category_id": cat, "segmentation": _rle(region),
                 "area": float(region.sum()), "bbox": [0, 0, WIDTH, HEIGHT], "iscrowd": 0}
            )  # fmt: skip
    annotations = root / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    payload = {"images": images, "annotations": things, "categories": list(COCO_THING_CATEGORIES)}
    (annotations / f"instances_{split}.json").write_text(json.dumps(payload))
    if with_stuff:
        payload = {"images": images, "annotations": stuff, "categories": list(COCO_STUFF_CATEGORIES)}
        (annotations / f"stuff_{split}.json").write_text(json.dumps(payload))


def write_coco_stuff27(data_root: Path) -> Path:
    """``cocostuff`` with instances (polygons + crowd RLE) and stuff (RLE) JSON for train2017 and val2017."""
    root = Path(data_root) / "cocostuff"
    for split, n in (("train2017", SPLIT_SIZES["train"]), ("val2017", SPLIT_SIZES["val"])):
        _coco_split(root, split, n, with_stuff=True)
    return Path(data_root)


def write_coco_things(data_root: Path) -> Path:
    """``coco`` with instances JSON (polygons + crowd RLE) for train2017 and val2017."""
    root = Path(data_root) / "coco"
    for split, n in (("train2017", SPLIT_SIZES["train"]), ("val2017", SPLIT_SIZES["val"])):
        _coco_split(root, split, n, with_stuff=False)
    return Path(data_root)


def write_coco_images(data_root: Path) -> Path:
    """``coco/{train2017,val2017}/<id>.jpg``: COCO's images as the official ``train2017.zip`` / ``val2017.zip``
    unpack them, without annotations (training images read as a flat ``imagefolder``: root ``coco``)."""
    root = Path(data_root) / "coco"
    for split, n in (("train2017", SPLIT_SIZES["train"]), ("val2017", SPLIT_SIZES["val"])):
        for i in range(n):
            image_id = 1000 * split.startswith("val") + i + 1
            _save_rgb(root / split / f"{image_id:012d}.jpg", i, i + 1)
    return Path(data_root)
