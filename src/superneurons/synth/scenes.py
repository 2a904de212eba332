"""Synthetic scenes: a list of coloured shapes on a grey canvas, and their rendering (pure PIL).

A `Scene` is the ground truth every label is computed from: each `SceneObject` has a colour, a
shape, a size class, a bounding box in pixels and a draw order (later objects are drawn over
earlier ones; overlaps are allowed). Depth convention, used by the `depth` question family: the
canvas is a ground plane seen from the front, so an object whose bottom edge is LOWER in the
image (larger `bbox[3]`) is nearer the viewer, i.e. "in front of" the other. Draw order is random
and independent of depth; the `occlusion` family asks about draw order only.

Scenes are deterministic by `(seed, split, index)`: `make_scene(split, index, seed)` always gives
the same scene, so a split is defined by its seed stream and never needs to be stored.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image, ImageDraw

CANVAS = 64
BACKGROUND = (128, 128, 128)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, int] = {"small": 14, "large": 22}  # side / diameter in pixels
MAX_OBJECTS = 5
MIN_VISIBLE = 0.6  # every object keeps at least this fraction of its pixels visible


@dataclass(frozen=True)
class SceneObject:
    """One shape: `bbox` is (x0, y0, x1, y1) in pixels, exclusive of x1/y1; `order` is its draw index."""

    color: str
    shape: str
    size: str
    bbox: tuple[int, int, int, int]
    order: int

    @property
    def name(self) -> str:
        """'red circle'."""
        return f"{self.color} {self.shape}"

    @property
    def cx(self) -> float:
        return (self.bbox[0] + self.bbox[2]) / 2

    @property
    def cy(self) -> float:
        return (self.bbox[1] + self.bbox[3]) / 2

    @property
    def bottom(self) -> int:
        return self.bbox[3]


@dataclass
class Scene:
    """A scene description: objects in draw order (index == `order`)."""

    id: str
    objects: list[SceneObject]
    size: int = CANVAS
    background: tuple[int, int, int] = BACKGROUND
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (what the JSONL `meta.scene` holds)."""
        return {"id": self.id, "size": self.size,
                "objects": [{**asdict(o), "bbox": list(o.bbox)} for o in self.objects]}

    def signature(self) -> tuple:
        """Content key: two scenes with the same signature render to the same image."""
        return tuple((o.color, o.shape, o.size, o.bbox) for o in self.objects)

    def render(self) -> Image.Image:
        """The scene as an RGB PIL image, objects drawn in `order`."""
        img = Image.new("RGB", (self.size, self.size), self.background)
        draw = ImageDraw.Draw(img)
        for o in self.objects:
            _draw_shape(draw, o.shape, o.bbox, COLORS[o.color])
        return img

    def index_map(self) -> Image.Image:
        """An 'L' image whose pixel value is 1 + the order of the visible object there (0 = background)."""
        img = Image.new("L", (self.size, self.size), 0)
        draw = ImageDraw.Draw(img)
        for o in self.objects:
            _draw_shape(draw, o.shape, o.bbox, o.order + 1)
        return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, bbox: tuple[int, int, int, int], fill: Any) -> None:
    x0, y0, x1, y1 = bbox
    box = (x0, y0, x1 - 1, y1 - 1)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")


def pixel_areas(scene: Scene) -> tuple[list[int], list[int]]:
    """(full pixel area, visible pixel area) per object, measured on rendered masks."""
    full = []
    for o in scene.objects:
        m = Image.new("L", (scene.size, scene.size), 0)
        _draw_shape(ImageDraw.Draw(m), o.shape, o.bbox, 1)
        full.append(m.histogram()[1])
    hist = scene.index_map().histogram()
    visible = [hist[o.order + 1] for o in scene.objects]
    return full, visible


def bbox_overlap(a: SceneObject, b: SceneObject) -> bool:
    """True where the two bounding boxes intersect (a necessary condition for occlusion)."""
    return a.bbox[0] < b.bbox[2] and b.bbox[0] < a.bbox[2] and a.bbox[1] < b.bbox[3] and b.bbox[1] < a.bbox[3]


def pixels_overlap(scene: Scene, a: SceneObject, b: SceneObject) -> int:
    """Number of pixels of the earlier-drawn object covered by the later-drawn one."""
    if not bbox_overlap(a, b):
        return 0
    first, last = (a, b) if a.order < b.order else (b, a)
    ma = Image.new("L", (scene.size, scene.size), 0)
    _draw_shape(ImageDraw.Draw(ma), first.shape, first.bbox, 1)
    _draw_shape(ImageDraw.Draw(ma), last.shape, last.bbox, 2)
    mf = Image.new("L", (scene.size, scene.size), 0)
    _draw_shape(ImageDraw.Draw(mf), first.shape, first.bbox, 1)
    return mf.histogram()[1] - ma.histogram()[1]


def scene_rng(seed: int, split: str, index: int) -> random.Random:
    """The random stream of one scene; string seeding is stable across runs and platforms."""
    return random.Random(f"superneurons-synth/{seed}/{split}/{index}")


def make_scene(split: str, index: int, seed: int = 0, min_objects: int = 1,
               max_objects: int = MAX_OBJECTS, tries: int = 50) -> Scene:
    """Scene `index` of `split` for `seed`: 1-5 objects, unique (colour, shape) pairs, each >= 60% visible.

    The same arguments always give the same scene. Objects may overlap; a placement that would hide
    more than 40% of any object is redrawn.
    """
    rng = scene_rng(seed, split, index)
    n = rng.randint(min_objects, max_objects)
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    chosen = rng.sample(pairs, n)
    objects: list[SceneObject] = []
    for color, shape in chosen:
        for _ in range(tries):
            size = rng.choice(list(SIZES))
            side = SIZES[size]
            x0 = rng.randint(1, CANVAS - side - 1)
            y0 = rng.randint(1, CANVAS - side - 1)
            cand = SceneObject(color, shape, size, (x0, y0, x0 + side, y0 + side), len(objects))
            trial = Scene("trial", objects + [cand])
            full, visible = pixel_areas(trial)
            if all(v >= MIN_VISIBLE * f for v, f in zip(visible, full, strict=True)):
                objects.append(cand)
                break
    return Scene(id=f"{split}-{index:06d}", objects=objects)
