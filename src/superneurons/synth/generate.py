"""Write the synthetic benchmark: images + one JSONL of `Sample` records per split and family.

Layout under `out_dir`:
```
benchmark.json                 seed, scene counts, families, sample counts (the manifest)
<split>/images/<scene id>.png  one image per scene (split in train / probe / val)
<split>/scenes.jsonl           the scene descriptions every label was computed from
<split>/<family>.jsonl         {"id", "image", "question", "label", "meta"} records
```
Splits never share a scene: each split has its own seed stream and a scene whose content equals
one already used by an earlier split is skipped. Every family but `mcq` is balanced (the yes and
no counts differ by at most one); `mcq` keeps all 4 options of each question (1 yes : 3 no), since
question-level accuracy needs them; draw a balanced probe set with `balanced_sample`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from superneurons.data import Sample, write_samples
from superneurons.errors import DataError
from superneurons.synth.questions import ALL_FAMILIES, FAMILIES, NO, YES, mcq_questions
from superneurons.synth.scenes import Scene, make_scene

SPLITS: tuple[str, ...] = ("train", "probe", "val")
MANIFEST = "benchmark.json"
SCENES_FILE = "scenes.jsonl"
IMAGES_DIR = "images"
DEPTH_CUE = "vertical position: the object whose bottom edge is lower in the image is in front"


def check_families(families: Sequence[str] | None) -> list[str]:
    """The requested families in canonical order; an unknown name raises listing the valid ones."""
    if families is None:
        return list(ALL_FAMILIES)
    unknown = [f for f in families if f not in ALL_FAMILIES]
    if unknown:
        raise DataError(f"unknown question family {unknown[0]!r}; choose from {', '.join(ALL_FAMILIES)}")
    return [f for f in ALL_FAMILIES if f in families]


def split_scenes(n_scenes: Mapping[str, int], seed: int) -> dict[str, list[Scene]]:
    """`n_scenes[split]` scenes per split, with no scene content shared between splits."""
    seen: set[tuple] = set()
    out: dict[str, list[Scene]] = {}
    for split, n in n_scenes.items():
        scenes: list[Scene] = []
        index = 0
        while len(scenes) < n:
            scene = make_scene(split, index, seed)
            index += 1
            if scene.signature() in seen:
                continue
            seen.add(scene.signature())
            scenes.append(scene)
        out[split] = scenes
    return out


def family_samples(scenes: Sequence[Scene], family: str, split: str, seed: int,
                   image_paths: Mapping[str, Path]) -> list[Sample]:
    """Samples of one family over a split's scenes; yes/no alternate so the family stays balanced."""
    rng = random.Random(f"superneurons-synth/questions/{seed}/{split}/{family}")
    samples: list[Sample] = []
    n_yes = n_no = 0
    for scene in scenes:
        image = image_paths[scene.id]
        if family == "mcq":
            for q in mcq_questions(scene, rng):
                samples.append(Sample(f"{scene.id}-mcq-{q.meta['option']}", image, q.text, q.label,
                                      {"family": family, "scene_id": scene.id, **q.meta}))
            continue
        want = YES if n_yes <= n_no else NO
        q = FAMILIES[family](scene, rng, want)
        if q is None:
            continue
        n_yes += q.label == YES
        n_no += q.label == NO
        samples.append(Sample(f"{scene.id}-{family}", image, q.text, q.label,
                              {"family": family, "scene_id": scene.id, **q.meta}))
    return samples


def generate_benchmark(out_dir: str | Path, n_scenes: int | Mapping[str, int] = 300, seed: int = 0,
                       families: Sequence[str] | None = None) -> dict[str, dict[str, Path]]:
    """Render scenes and write the question files; returns {split: {family: jsonl path}}.

    `n_scenes` is the number of scenes per split (an int for all three, or {split: n}). The same
    arguments always write the same files. Example:

        paths = generate_benchmark("bench", n_scenes=200, seed=0, families=["presence", "spatial"])
        samples = load_samples(paths["val"]["presence"])
    """
    out = Path(out_dir)
    fams = check_families(families)
    counts = dict.fromkeys(SPLITS, n_scenes) if isinstance(n_scenes, int) else dict(n_scenes)
    bad = [s for s in counts if s not in SPLITS]
    if bad:
        raise DataError(f"unknown split {bad[0]!r}; splits are {', '.join(SPLITS)}")
    if any(n < 1 for n in counts.values()):
        raise DataError(f"n_scenes must be >= 1 per split, got {counts}")
    scenes = split_scenes(counts, seed)
    paths: dict[str, dict[str, Path]] = {}
    manifest: dict = {"seed": seed, "scenes": counts, "families": fams, "depth_cue": DEPTH_CUE, "samples": {}}
    for split, split_scenes_ in scenes.items():
        folder = out / split
        (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        image_paths = {}
        for scene in split_scenes_:
            path = folder / IMAGES_DIR / f"{scene.id}.png"
            scene.render().save(path)
            image_paths[scene.id] = path
        with (folder / SCENES_FILE).open("w", encoding="utf-8") as fh:
            for scene in split_scenes_:
                fh.write(json.dumps(scene.to_dict()) + "\n")
        paths[split] = {}
        for family in fams:
            samples = family_samples(split_scenes_, family, split, seed, image_paths)
            paths[split][family] = write_samples(samples, folder / f"{family}.jsonl")
            manifest["samples"][f"{split}/{family}"] = {"n": len(samples),
                                                         "yes": sum(s.label == YES for s in samples)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return paths
