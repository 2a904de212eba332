"""Yes/no question families over a `Scene`; every label is computed from the scene description.

Each family is a function `(scene, rng, want) -> Question | None`: it tries to ask a question
whose answer is `want` ("yes"/"no") and returns None where the scene cannot host one (e.g.
`spatial` needs two objects). `mcq` is the exception: one 4-option question becomes 4 binary
questions (`mcq_questions`), as the paper does for A-OKVQA / ScienceQA.

Families (the paper's datasets they mirror):
- presence  (POPE): "Is there a red circle in the image?"; negatives are `hard` where possible
  (the colour is on another shape and the shape in another colour), else `random`.
- attribute: "Is the circle red?" about a shape that occurs once in the scene.
- spatial   (CLEVR): "Is the red circle left of the blue square?" (bbox centres >= 6 px apart).
- occlusion (InstaOrder): "Is the red circle obstructing the blue square?" only for pairs whose
  pixels overlap; yes when the first one is drawn later (over the other).
- depth     (InstaOrder): "Is the red circle in front of the blue square?"; depth cue is vertical
  position: the object whose bottom edge is lower in the image is nearer (>= 6 px apart).
- counting  (CLEVR): "Are there 2 circles in the image?" (exact count, 1-4).
- mcq: "What color is the circle?" / "How many squares are there?" with 4 options.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from superneurons.synth.scenes import COLORS, SHAPES, Scene, SceneObject, pixels_overlap

YES, NO = "yes", "no"
MIN_GAP = 6  # pixels between centres (spatial) or bottoms (depth) for an unambiguous answer
MIN_OCCLUDED = 4  # pixels of the lower object covered for a pair to count as overlapping


@dataclass
class Question:
    """A yes/no question about one scene; `meta` says what was asked (family, kind, objects)."""

    text: str
    label: str
    meta: dict[str, Any] = field(default_factory=dict)


def plural(shape: str) -> str:
    return shape + "s"


def _pick_pair(scene: Scene, rng: random.Random, ok: Callable[[SceneObject, SceneObject], bool],
               want: str, truth: Callable[[SceneObject, SceneObject], bool]) -> tuple[SceneObject, SceneObject] | None:
    pairs = [(a, b) for a in scene.objects for b in scene.objects
             if a is not b and ok(a, b) and truth(a, b) == (want == YES)]
    return rng.choice(pairs) if pairs else None


def presence(scene: Scene, rng: random.Random, want: str) -> Question | None:
    present = {(o.color, o.shape) for o in scene.objects}
    if want == YES:
        o = rng.choice(scene.objects)
        return Question(f"Is there a {o.name} in the image?", YES, {"kind": "positive", "color": o.color, "shape": o.shape})
    colors = {o.color for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    hard = [(c, s) for c, s in absent if c in colors and s in shapes]
    kind, pool = ("hard", hard) if hard and rng.random() < 0.5 else ("random", absent)
    if not pool:
        return None
    c, s = rng.choice(pool)
    return Question(f"Is there a {c} {s} in the image?", NO, {"kind": kind, "color": c, "shape": s})


def attribute(scene: Scene, rng: random.Random, want: str) -> Question | None:
    unique = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    if not unique:
        return None
    o = rng.choice(unique)
    if want == YES:
        return Question(f"Is the {o.shape} {o.color}?", YES, {"kind": "positive", "color": o.color, "shape": o.shape})
    others = [c for c in COLORS if c != o.color]
    in_scene = [c for c in others if any(p.color == c for p in scene.objects)]
    kind, pool = ("hard", in_scene) if in_scene and rng.random() < 0.5 else ("random", others)
    c = rng.choice(pool)
    return Question(f"Is the {o.shape} {c}?", NO, {"kind": kind, "color": c, "shape": o.shape})


def _pair_meta(a: SceneObject, b: SceneObject) -> dict[str, Any]:
    return {"first": a.name, "second": b.name}


def spatial(scene: Scene, rng: random.Random, want: str) -> Question | None:
    pair = _pick_pair(scene, rng, lambda a, b: abs(a.cx - b.cx) >= MIN_GAP, want, lambda a, b: a.cx < b.cx)
    if pair is None:
        return None
    a, b = pair
    return Question(f"Is the {a.name} left of the {b.name}?", want, _pair_meta(a, b))


def occlusion(scene: Scene, rng: random.Random, want: str) -> Question | None:
    pair = _pick_pair(scene, rng, lambda a, b: pixels_overlap(scene, a, b) >= MIN_OCCLUDED, want,
                      lambda a, b: a.order > b.order)
    if pair is None:
        return None
    a, b = pair
    return Question(f"Is the {a.name} obstructing the {b.name}?", want, _pair_meta(a, b))


def depth(scene: Scene, rng: random.Random, want: str) -> Question | None:
    pair = _pick_pair(scene, rng, lambda a, b: abs(a.bottom - b.bottom) >= MIN_GAP, want,
                      lambda a, b: a.bottom > b.bottom)
    if pair is None:
        return None
    a, b = pair
    return Question(f"Is the {a.name} in front of the {b.name}?", want, _pair_meta(a, b))


def count_text(k: int, shape: str) -> str:
    return f"Is there 1 {shape} in the image?" if k == 1 else f"Are there {k} {plural(shape)} in the image?"


def counting(scene: Scene, rng: random.Random, want: str) -> Question | None:
    counts = {s: sum(o.shape == s for o in scene.objects) for s in SHAPES}
    if want == YES:
        shape = rng.choice([s for s in SHAPES if counts[s] > 0])
        k = counts[shape]
    else:
        shape = rng.choice(SHAPES)
        near = [k for k in (counts[shape] - 1, counts[shape] + 1) if 1 <= k <= 4]
        far = [k for k in range(1, 5) if k != counts[shape]]
        k = rng.choice(near if near and rng.random() < 0.7 else far)
    return Question(count_text(k, shape), want, {"shape": shape, "k": k, "count": counts[shape]})


def mcq_questions(scene: Scene, rng: random.Random) -> list[Question]:
    """One 4-option question as 4 binary questions (exactly one "yes"); [] where none fits."""
    unique = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    if unique and rng.random() < 0.5:
        o = rng.choice(unique)
        stem, options, answer = f"What color is the {o.shape}?", list(COLORS), o.color
        kind = "color"
    else:
        shape = rng.choice(SHAPES)
        n = sum(o.shape == shape for o in scene.objects)
        lo = rng.randint(max(0, n - 3), min(n, 1))
        stem, options, answer = f"How many {plural(shape)} are there?", [str(k) for k in range(lo, lo + 4)], str(n)
        kind = "count"
    qid = rng.getrandbits(32)
    return [Question(f"{stem} Is it {opt}? Answer with yes or no.", YES if opt == answer else NO,
                     {"kind": kind, "stem": stem, "options": options, "option": opt, "answer": answer,
                      "question_id": f"{scene.id}-q{qid:08x}"})
            for opt in options]


FAMILIES: dict[str, Callable[[Scene, random.Random, str], Question | None]] = {
    "presence": presence,
    "attribute": attribute,
    "spatial": spatial,
    "occlusion": occlusion,
    "depth": depth,
    "counting": counting,
}
ALL_FAMILIES: tuple[str, ...] = (*FAMILIES, "mcq")
