"""Embedded procedural dataset: dense-labelled synthetic scenes that need no download.

Every image is a scene of one or two *stuff* regions (sky-like gradient, grass-like streak noise,
water-like wavy stripes, brick grid) split by a wavy horizon or a blob, over which 2–5 *thing*
objects are painted in order (later ones occlude earlier ones, and the mask follows). A thing class
is a pair (shape, texture): a dotted disc, a striped square, a checkered triangle, ... Colours of
every stuff region and every object are drawn from the whole HSV range independently of the class,
so colour is no class signal: colour jitter neither solves nor destroys the task, and a method has
to encode shape and texture in its dense features. Objects take 15%–50% of the image side, sit
anywhere, and are rotated at random; textures are attached to the object frame with a period of
5–8 pixels at size 96. All lengths scale with ``size`` and the random draws do not depend on it,
so a given index is the same scene at every size, only sampled more or less finely.

What the dataset can tell about a method:
    * whether dense features separate classes defined by shape and texture rather than colour, and
      localise them (linear / k-NN / clustering segmentation on the masks; multi-label probing on
      ``labels``);
    * quickly, offline and deterministically: hundreds of images per second per core at 96x96,
      so smoke tests, CI and hyper-parameter sanity checks run on a laptop CPU.

What it cannot tell:
    * transfer to real images (natural statistics, lighting, clutter, context, camera effects);
    * long-tailed or fine-grained semantics, part-whole hierarchies, or anything needing language;
    * behaviour at the scale of real datasets (data-hungry methods may rank differently);
    * robustness to real distribution shift. A method that wins here has only passed a sanity check.

Palettes: with ``palette="natural"`` (the registered ``embedded_natural`` dataset) hues are class-typical
but variable, as in natural images (each class has a typical hue shared with one or two others, a 0.04 spread,
and a quarter of regions ignore it), drawn from a stream of their own, so that every scene keeps its layout,
shapes and textures and only its hues change. A random-init ViT then already reads much of the class from a
patch's colour (CPU track: 11.7 vs 4.9 linear-probe mIoU), which colour augmentation erases: the CPU track
keeps the random palette (README, "The embedded dataset").

Compositions (issue 16's data screens; neither is the CPU track's data): ``composition="coherent"`` (registered as
``embedded_coherent``) gives every thing in a scene the class of its first thing, so that a scene is "about" one
object class, as object-centric photographs are; ``palette="scene"`` paints every region of a scene with one
colour pair, drawn from a stream of its own, so that regions differ only by texture and shape and no colour
contrast can tell one scene's views apart from another's (``embedded_coherent_mono``: both). Both keep every
draw of the random palette's mixed scene, so a given index has the same background and object placements (centre,
size, rotation) in all four variants; only a coherent scene's shapes follow their new class. Measured on the CPU
track's warm-start recipe (benchmarks/RESULTS.md, "CPU track data screens"): both raise the supervised ceiling more
than they help DINO (share of the supervised gap 9.7 % and 14.6 % against 15.6 %), so neither is adopted.

Determinism: image ``i`` of split ``s`` is rendered from its own
``numpy.random.Generator(PCG64(SeedSequence([salt, seed, split_key, i])))``, so it is the same for
any access order, worker process or ``num_images``; the split key makes train and val distinct
streams. ``GENERATOR_VERSION`` is bumped whenever rendering changes (numbers measured on different
versions do not compare).

Ignore index: ``ignore_index`` (255) is exposed for the harness's losses and metrics, but the
generator draws hard (aliased) edges and every pixel gets a class, so masks never contain it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from dssl.data.embedded_config import EmbeddedOptions

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_VERSION",
    "IGNORE_INDEX",
    "STUFF_CLASSES",
    "THING_CLASSES",
    "EmbeddedDataset",
    "EmbeddedScene",
]

#: Bumped whenever a change to rendering changes any pixel or label.
GENERATOR_VERSION = 1

_STUFF_NAMES: tuple[str, ...] = ("sky", "grass", "water", "brick")
_THING_NAMES: tuple[str, ...] = (
    "dotted_disc",
    "striped_square",
    "checkered_triangle",
    "spoked_ring",
    "plain_cross",
    "ringed_star",
    "hatched_ellipse",
    "zigzag_crescent",
)
CLASS_NAMES: tuple[str, ...] = _STUFF_NAMES + _THING_NAMES
STUFF_CLASSES: tuple[int, ...] = tuple(range(len(_STUFF_NAMES)))
THING_CLASSES: tuple[int, ...] = tuple(range(len(_STUFF_NAMES), len(CLASS_NAMES)))
IGNORE_INDEX = 255

# Mixed into every seed so that this generator's streams never coincide with another user of the
# same integer seed (an ASCII "dsslEMB" tag).
_SALT = 0x647373_6C454D42
_SPLIT_KEYS: dict[str, int] = {"train": 1, "val": 2}

_MIN_SIZE = 32
_REF_SIZE = 96.0  # sizes in pixels below are given at 96x96 and scaled with the image size
_TWO_PI = 2.0 * math.pi

FloatArray = np.ndarray  # float32 arrays; numpy's generic aliases add little here


@dataclass(frozen=True)
class EmbeddedScene:
    """One rendered scene with the per-instance bookkeeping that ``render`` drops.

    Attributes:
        image: ``uint8 (H, W, 3)`` RGB image.
        mask: ``int64 (H, W)`` class id per pixel.
        instances: ``int16 (H, W)`` index of the visible thing instance per pixel, ``-1`` on stuff.
        instance_classes: Class id of each thing instance, in painting order.
        drawn_areas: Pixels each instance covered when painted (inside the image), before later
            instances occluded it; the visible area is ``(instances == i).sum()``.
    """

    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    instance_classes: tuple[int, ...]
    drawn_areas: tuple[int, ...]


# --------------------------------------------------------------------------------------------- colour


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) to ``float32 (3,)`` RGB in [0, 255]."""
    sector = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s)
    rgb = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[sector]
    return np.array(rgb, dtype=np.float32) * 255.0


#: Typical hue of each class (stuff then things) under ``palette="natural"``: 0 red, 1/6 yellow, 1/3 green,
#: 1/2 cyan, 2/3 blue, 5/6 magenta. Classes share hue families in pairs or threes (sky/water/ellipse,
#: grass/triangle, brick/cross/disc, square/star), so colour narrows a region down to a few classes and
#: texture and shape must decide, as in natural images where colour is class-typical but not decisive.
NATURAL_HUES: tuple[float, ...] = (0.60, 0.31, 0.52, 0.03, 0.07, 0.15, 0.34, 0.78, 0.99, 0.14, 0.64, 0.88)
#: Standard deviation of a region's hue around its class's typical hue.
NATURAL_HUE_SPREAD = 0.04
#: Probability that a region ignores its class's hue (any hue), like an unusually coloured object.
NATURAL_OFF_PALETTE = 0.25


class NaturalHues:
    """Class-typical hues (``palette="natural"``), drawn from their own stream.

    The scene's stream makes the same draws under both palettes, so a scene keeps its layout, shapes,
    textures, saturations and values and only its hues move toward each class's typical hue.

    Args:
        rng: The palette's own generator (one per image).
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def hue(self, cls: int, uniform_hue: float) -> float:
        """The hue of a region of class ``cls``; ``uniform_hue`` (the random palette's) when off-palette."""
        if self.rng.random() < NATURAL_OFF_PALETTE:
            return uniform_hue
        return float((NATURAL_HUES[cls] + self.rng.normal(0.0, NATURAL_HUE_SPREAD)) % 1.0)


def _colour_pair(
    rng: np.random.Generator,
    cls: int,
    palette: NaturalHues | None = None,
    scene_colours: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two colours of a region of class ``cls``: values at least 0.3 apart; any hue, or a class-typical one.

    The value gap keeps the texture visible whatever the hues (two saturated colours of equal
    brightness would blur into one under greyscale or colour-jitter augmentation). The first hue is
    uniform, unless a ``palette`` moves it to the class's typical hue. ``scene_colours`` (the scene palette's
    one pair) is returned instead, after the region's own draws, so that ``rng``'s stream, hence the layout,
    stays that of the same index without it.
    """
    h1 = rng.random()
    if palette is not None:
        h1 = palette.hue(cls, h1)
    s1, v1 = rng.uniform(0.25, 1.0), rng.uniform(0.3, 1.0)
    h2 = (h1 + rng.uniform(0.2, 0.8)) % 1.0 if rng.random() < 0.5 else h1
    s2 = rng.uniform(0.1, 1.0)
    v2 = rng.uniform(0.05, v1 - 0.3) if v1 >= 0.65 else rng.uniform(v1 + 0.3, 1.0)
    if scene_colours is not None:
        return scene_colours
    return _hsv_to_rgb(h1, s1, v1), _hsv_to_rgb(h2, s2, v2)


# ---------------------------------------------------------------------------------------------- stuff
# Stuff textures take pixel-centre coordinates ys (S, 1) and xs (1, S) and return t (S, S) in [0, 1],
# the mix between the region's two colours.


def _sky(rng: np.random.Generator, ys: FloatArray, xs: FloatArray, size: int) -> FloatArray:
    """Smooth, nearly vertical gradient."""
    tilt = rng.uniform(-0.4, 0.4)
    gain = rng.uniform(0.8, 1.3)
    along = ((ys - size / 2) * math.cos(tilt) + (xs - size / 2) * math.sin(tilt)) / size
    return np.clip(along * gain + 0.5, 0.0, 1.0)


def _grass(rng: np.random.Generator, ys: FloatArray, xs: FloatArray, size: int) -> FloatArray:
    """Vertical blades: noise stretched vertically, with a random phase per column.

    The noise table lives on the 96x96 reference grid so that the number of draws, and hence the
    whole scene, does not depend on ``size``.
    """
    ref = int(_REF_SIZE)
    blade = rng.uniform(3.0, 6.0)
    noise = rng.random((int(_REF_SIZE / 3.0) + 2, ref), dtype=np.float32)
    shift = rng.random(ref)
    col = (xs * (_REF_SIZE / size)).astype(np.intp)
    row = (ys * (_REF_SIZE / size) / blade + shift[col]).astype(np.intp)
    return noise[row, col]


def _water(rng: np.random.Generator, ys: FloatArray, xs: FloatArray, size: int) -> FloatArray:
    """Horizontal stripes bent by a sine wave."""
    period = rng.uniform(6.0, 11.0) * size / _REF_SIZE
    amp = rng.uniform(1.0, 3.0) * size / _REF_SIZE
    wavelength = rng.uniform(0.3, 0.8) * size
    ph1, ph2 = rng.uniform(0.0, _TWO_PI, 2)
    bent = ys + amp * np.sin(xs * (_TWO_PI / wavelength) + ph1)
    return 0.5 + 0.5 * np.sin(bent * (_TWO_PI / period) + ph2)


def _brick(rng: np.random.Generator, ys: FloatArray, xs: FloatArray, size: int) -> FloatArray:
    """Brick wall: mortar lines (t = 1) on a grid whose every other row is offset by half a brick."""
    height = rng.uniform(7.0, 11.0) * size / _REF_SIZE
    width = height * rng.uniform(1.8, 2.6)
    mortar = max(1.0, 0.18 * height)
    oy, ox = rng.uniform(0.0, height), rng.uniform(0.0, width)
    row = np.floor((ys + oy) / height)
    xr = xs + ox + (row % 2) * (width / 2)
    return (((ys + oy) % height < mortar) | (xr % width < mortar)).astype(np.float32)


_STUFF_TEXTURES: tuple[Callable[[np.random.Generator, FloatArray, FloatArray, int], FloatArray], ...] = (
    _sky,
    _grass,
    _water,
    _brick,
)

# --------------------------------------------------------------------------------------------- things
# Shapes take object-frame coordinates u, v (h, w) normalised by the object radius and must stay
# inside the unit disc (the painting box is the disc's box). Textures take object-frame coordinates
# a, b in pixels and the texture period p in pixels, and return t in [0, 1].


def _disc(u: FloatArray, v: FloatArray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: FloatArray, v: FloatArray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.7


def _triangle(u: FloatArray, v: FloatArray) -> np.ndarray:
    # Equilateral triangle inscribed in the unit circle: its three edges lie at distance 0.5.
    half_x = 0.8660254 * u
    return (v >= -0.5) & (half_x + 0.5 * v <= 0.5) & (-half_x + 0.5 * v <= 0.5)


def _ring(u: FloatArray, v: FloatArray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _cross(u: FloatArray, v: FloatArray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


def _star(u: FloatArray, v: FloatArray) -> np.ndarray:
    # Five points: radius linear in angle between 1 at the tips and 0.42 between them.
    frac = (np.arctan2(v, u) * (5.0 / _TWO_PI)) % 1.0
    return np.hypot(u, v) <= 0.42 + 0.58 * np.abs(2.0 * frac - 1.0)


def _ellipse(u: FloatArray, v: FloatArray) -> np.ndarray:
    return u * u + (v / 0.55) ** 2 <= 1.0


def _crescent(u: FloatArray, v: FloatArray) -> np.ndarray:
    return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.75**2)


def _dots(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    oa, ob = rng.uniform(0.0, p, 2)
    da, db = (a + oa) % p - p / 2, (b + ob) % p - p / 2
    return (da * da + db * db <= (0.3 * p) ** 2).astype(np.float32)


def _stripes(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    return ((a + rng.uniform(0.0, p)) % p < p / 2).astype(np.float32)


def _checker(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    cell = 0.6 * p
    oa, ob = rng.uniform(0.0, cell, 2)
    return ((np.floor((a + oa) / cell) + np.floor((b + ob) / cell)) % 2).astype(np.float32)


def _spokes(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    # Spoke count chosen so the arc length between spokes at mid-ring is about one period.
    mid_radius = 0.78 * float(np.sqrt(np.max(a * a + b * b)))
    count = max(4, round(_TWO_PI * mid_radius / p))
    frac = np.arctan2(b, a) * (count / _TWO_PI) + rng.uniform(0.0, 1.0)
    return (frac % 1.0 < 0.5).astype(np.float32)


def _plain(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    return np.zeros(a.shape, dtype=np.float32)


def _concentric(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    return ((np.hypot(a, b) + rng.uniform(0.0, p)) % p < p / 2).astype(np.float32)


def _hatch(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    # Thin diagonal cross-hatching (lines a third of a period wide), unlike the brick grid's bands.
    d1, d2 = (a + b) * 0.70710677, (a - b) * 0.70710677
    width = max(1.0, p / 3)
    oa, ob = rng.uniform(0.0, p, 2)
    return (((d1 + oa) % p < width) | ((d2 + ob) % p < width)).astype(np.float32)


def _zigzag(rng: np.random.Generator, a: FloatArray, b: FloatArray, p: float) -> FloatArray:
    zig = np.abs(2.0 * ((b / (1.2 * p)) % 1.0) - 1.0) * (0.8 * p)
    return ((a + zig + rng.uniform(0.0, p)) % p < p / 2).astype(np.float32)


_Shape = Callable[[FloatArray, FloatArray], np.ndarray]
_Texture = Callable[[np.random.Generator, FloatArray, FloatArray, float], FloatArray]
_THINGS: tuple[tuple[_Shape, _Texture], ...] = (
    (_disc, _dots),
    (_square, _stripes),
    (_triangle, _checker),
    (_ring, _spokes),
    (_cross, _plain),
    (_star, _concentric),
    (_ellipse, _hatch),
    (_crescent, _zigzag),
)
assert len(_THINGS) == len(_THING_NAMES)


# ------------------------------------------------------------------------------------------ rendering


@lru_cache(maxsize=16)
def _pixel_centres(size: int) -> np.ndarray:
    centres = np.arange(size, dtype=np.float32) + 0.5
    centres.setflags(write=False)  # shared between calls through the cache
    return centres


def _paint_background(
    rng: np.random.Generator,
    size: int,
    image: np.ndarray,
    mask: np.ndarray,
    palette: NaturalHues | None,
    scene_colours: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Fill the whole image with one stuff region, or two split by a wavy horizon or a blob."""
    centres = _pixel_centres(size)
    ys, xs = centres[:, None], centres[None, :]
    n_stuff = len(STUFF_CLASSES)
    first = int(rng.integers(n_stuff))
    layout = rng.choice(3, p=(0.3, 0.4, 0.3))  # single region, horizon, blob
    regions: list[tuple[int, np.ndarray | None]] = [(first, None)]
    if layout != 0:
        second = (first + int(rng.integers(1, n_stuff))) % n_stuff
        if layout == 1:
            level = rng.uniform(0.3, 0.7) * size
            amp = rng.uniform(0.0, 0.08) * size
            wavelength = rng.uniform(0.5, 1.5) * size
            boundary = level + amp * np.sin(xs * (_TWO_PI / wavelength) + rng.uniform(0.0, _TWO_PI))
            region = ys > boundary
        else:
            cy, cx = rng.uniform(0.25, 0.75, 2) * size
            ry, rx = rng.uniform(0.25, 0.45, 2) * size
            lobes, wobble, phase = int(rng.integers(3, 7)), rng.uniform(0.0, 0.25), rng.uniform(0.0, _TWO_PI)
            dy, dx = (ys - cy) / ry, (xs - cx) / rx
            region = dy * dy + dx * dx <= 1.0 + wobble * np.sin(lobes * np.arctan2(dy, dx) + phase)
        regions.append((second, region))
    for cls, region in regions:
        t = _STUFF_TEXTURES[cls](rng, ys, xs, size)
        c1, c2 = _colour_pair(rng, cls, palette, scene_colours)
        colour = c1 + t[..., None] * (c2 - c1)
        if region is None:
            image[...] = colour
            mask[...] = cls
        else:
            np.copyto(image, colour, where=region[..., None])
            np.copyto(mask, cls, where=region)


def _render_scene(
    rng: np.random.Generator,
    size: int,
    palette: NaturalHues | None = None,
    *,
    coherent: bool = False,
    scene_colours: tuple[np.ndarray, np.ndarray] | None = None,
) -> EmbeddedScene:
    """Render one scene from ``rng``; every random draw comes from it, in a fixed order.

    ``palette``: class-typical hues (``palette="natural"``), drawn from their own stream, or ``None`` for any hue.
    ``coherent``: every thing takes the class of the first one (the layout draws are unchanged).
    ``scene_colours``: one colour pair for every region (:func:`_colour_pair`).
    """
    image = np.empty((size, size, 3), dtype=np.float32)
    mask = np.empty((size, size), dtype=np.int64)
    instances = np.full((size, size), -1, dtype=np.int16)
    _paint_background(rng, size, image, mask, palette, scene_colours)

    centres = _pixel_centres(size)
    scale = size / _REF_SIZE
    n_objects = int(rng.integers(2, 6))
    classes = rng.integers(0, len(_THINGS), n_objects)
    if coherent:
        classes[:] = classes[0]
    drawn: list[int] = []
    for i, k in enumerate(classes):
        radius = rng.uniform(0.15, 0.5) * size / 2
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        theta = rng.uniform(0.0, _TWO_PI)
        period = max(3.0, rng.uniform(5.0, 8.0) * scale)
        c1, c2 = _colour_pair(rng, THING_CLASSES[k], palette, scene_colours)
        shape_fn, texture_fn = _THINGS[k]

        # Work in the bounding box of the object's unit disc only: objects are small.
        y0, y1 = max(0, int(cy - radius)), min(size, int(cy + radius) + 2)
        x0, x1 = max(0, int(cx - radius)), min(size, int(cx + radius) + 2)
        dy = (centres[y0:y1] - cy)[:, None]
        dx = (centres[x0:x1] - cx)[None, :]
        cos, sin = math.cos(theta), math.sin(theta)
        a = cos * dx + sin * dy
        b = cos * dy - sin * dx
        inside = shape_fn(a / radius, b / radius)
        t = texture_fn(rng, a, b, period)[inside]

        image[y0:y1, x0:x1][inside] = c1 + t[:, None] * (c2 - c1)
        mask[y0:y1, x0:x1][inside] = THING_CLASSES[k]
        instances[y0:y1, x0:x1][inside] = i
        drawn.append(int(inside.sum()))

    # Mild luminance noise, so no region is perfectly flat (a flat region is a trivial cue); the
    # + 0.5 makes the truncating cast to uint8 round to nearest.
    noise = rng.standard_normal((size, size, 1), dtype=np.float32)
    image += noise * 3.0 + 0.5
    np.clip(image, 0.0, 255.0, out=image)
    return EmbeddedScene(
        image=image.astype(np.uint8),
        mask=mask,
        instances=instances,
        instance_classes=tuple(THING_CLASSES[k] for k in classes),
        drawn_areas=tuple(drawn),
    )


# -------------------------------------------------------------------------------------------- dataset


class EmbeddedDataset(Dataset[dict[str, torch.Tensor]]):
    """Procedurally generated scenes with per-pixel and image-level labels (see the module docstring).

    Args:
        split: ``"train"`` or ``"val"``; the two are distinct random streams of the same ``seed``.
        size: Image side ``S`` in pixels (square images), at least 32.
        num_images: Number of images ``N``; defaults to ``DEFAULT_TRAIN_IMAGES`` or
            ``DEFAULT_VAL_IMAGES``. Image ``i`` does not depend on ``N``.
        seed: Non-negative dataset seed.
        palette: ``"random"`` (any hue per region), ``"natural"`` (class-typical hues) or ``"scene"`` (one
            colour pair for every region of a scene); see the module docstring.
        composition: ``"mixed"`` (each thing of any class) or ``"coherent"`` (every thing of a scene of one
            class).

    Attributes:
        num_classes: Number of classes ``C`` (stuff then things).
        class_names: Name of each class id.
        ignore_index: Label value losses and metrics must ignore (never produced by this generator).
        stuff_classes: Ids of the background-like classes (0 is one of them, not an "ignore" class).
        thing_classes: Ids of the object classes (shape + texture).

    Example:
        >>> ds = EmbeddedDataset("val", size=64, num_images=8)
        >>> sample = ds[0]
        >>> sample["image"].shape, sample["mask"].shape, sample["labels"].shape
        (torch.Size([3, 64, 64]), torch.Size([64, 64]), torch.Size([12]))
    """

    DEFAULT_TRAIN_IMAGES: ClassVar[int] = 2048
    DEFAULT_VAL_IMAGES: ClassVar[int] = 256
    GENERATOR_VERSION: ClassVar[int] = GENERATOR_VERSION

    num_classes: ClassVar[int] = len(CLASS_NAMES)
    class_names: ClassVar[tuple[str, ...]] = CLASS_NAMES
    ignore_index: ClassVar[int] = IGNORE_INDEX
    stuff_classes: ClassVar[tuple[int, ...]] = STUFF_CLASSES
    thing_classes: ClassVar[tuple[int, ...]] = THING_CLASSES

    def __init__(
        self,
        split: Literal["train", "val"] = "train",
        *,
        size: int = 96,
        num_images: int | None = None,
        seed: int = 0,
        palette: Literal["random", "natural", "scene"] = "random",
        composition: Literal["mixed", "coherent"] = "mixed",
    ) -> None:
        if split not in _SPLIT_KEYS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if size < _MIN_SIZE:
            raise ValueError(f"size must be at least {_MIN_SIZE}, got {size}")
        if num_images is None:
            num_images = self.DEFAULT_TRAIN_IMAGES if split == "train" else self.DEFAULT_VAL_IMAGES
        if num_images <= 0:
            raise ValueError(f"num_images must be positive, got {num_images}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.split = split
        self.size = int(size)
        self.num_images = int(num_images)
        self.seed = int(seed)
        if palette not in ("random", "natural", "scene"):
            raise ValueError(f"palette must be 'random', 'natural' or 'scene', got {palette!r}")
        if composition not in ("mixed", "coherent"):
            raise ValueError(f"composition must be 'mixed' or 'coherent', got {composition!r}")
        self.palette = palette
        self.composition = composition

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, size={self.size}, "
            f"num_images={self.num_images}, seed={self.seed}, palette={self.palette!r}, "
            f"composition={self.composition!r})"
        )

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if index < 0:
            index += self.num_images
        if not 0 <= index < self.num_images:
            raise IndexError(f"index out of range for {self.num_images} images")
        return index

    def rng(self, index: int, *, stream: int = 0) -> np.random.Generator:
        """The generator that image ``index`` is rendered from (fresh on every call); ``stream`` 1 is the
        natural palette's own, ``stream`` 2 the scene palette's."""
        index = self._check_index(index)
        entropy = [_SALT, self.seed, _SPLIT_KEYS[self.split], index] + ([stream] if stream else [])
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))

    def scene(self, index: int) -> EmbeddedScene:
        """Render image ``index`` with its instance bookkeeping (for tests, debugging and plots)."""
        palette = NaturalHues(self.rng(index, stream=1)) if self.palette == "natural" else None
        # The scene palette's pair: any hue, so the class passed (stuff 0) plays no part.
        scene_colours = _colour_pair(self.rng(index, stream=2), 0) if self.palette == "scene" else None
        return _render_scene(
            self.rng(index), self.size, palette, coherent=self.composition == "coherent", scene_colours=scene_colours
        )

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render image ``index`` in numpy.

        Returns:
            ``uint8 (S, S, 3)`` RGB image and ``int64 (S, S)`` class-id mask.
        """
        scene = self.scene(index)
        return scene.image, scene.mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One sample.

        Returns:
            ``image``: ``float32 (3, S, S)`` in [0, 1]; ``mask``: ``int64 (S, S)`` class ids (or
            ``ignore_index``); ``labels``: ``float32 (C,)`` multi-hot of the classes in the mask;
            ``label``: ``int64 ()`` image-level class for classification protocols (the thing class
            with the largest visible area, or the largest-area class if no thing is visible);
            ``index``: ``int64 ()`` the (non-negative) index.
        """
        index = self._check_index(index)
        image, mask = self.render(index)
        valid = mask[mask != self.ignore_index]
        areas = np.bincount(valid.ravel(), minlength=self.num_classes)
        present = areas > 0
        thing_areas = areas[list(THING_CLASSES)]
        # The dominant visible thing names the image (ties: lowest class id); stuff only if no thing shows.
        label = THING_CLASSES[int(thing_areas.argmax())] if thing_areas.max() > 0 else int(areas.argmax())
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0).contiguous(),
            "mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(present.astype(np.float32)),
            "label": torch.tensor(label, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def _build(options: EmbeddedOptions, split: Literal["train", "val"], **variant: str) -> EmbeddedDataset:
    num_images = options.num_train if split == "train" else options.num_val
    return EmbeddedDataset(split, size=options.size, num_images=num_images, seed=options.seed, **variant)  # type: ignore[arg-type]


def build_embedded(
    options: EmbeddedOptions, *, split: Literal["train", "val"], data_root: object = None
) -> EmbeddedDataset:
    """Dataset factory of the component registry: the ``split`` of the embedded dataset with ``options``.

    ``data_root`` is part of every dataset factory's signature; generated data ignores it.
    """
    return _build(options, split)


def build_embedded_natural(
    options: EmbeddedOptions, *, split: Literal["train", "val"], data_root: object = None
) -> EmbeddedDataset:
    """Factory of ``embedded_natural``: the same scenes with class-typical colours (``palette="natural"``)."""
    return _build(options, split, palette="natural")


def build_embedded_coherent(
    options: EmbeddedOptions, *, split: Literal["train", "val"], data_root: object = None
) -> EmbeddedDataset:
    """Factory of ``embedded_coherent``: the same placements, every thing of a scene of one class."""
    return _build(options, split, composition="coherent")


def build_embedded_coherent_mono(
    options: EmbeddedOptions, *, split: Literal["train", "val"], data_root: object = None
) -> EmbeddedDataset:
    """Factory of ``embedded_coherent_mono``: ``embedded_coherent`` with one colour pair per scene."""
    return _build(options, split, composition="coherent", palette="scene")
