"""The experiments on the shipped demo model, with the synthetic question families as datasets.

`run_demo_experiments(vlm, families, out_dir, quick)` runs what makes sense on the synthetic
benchmark, sharing one cache (activations and model answers are computed once per sample list):

| experiment | families (paper dataset they stand for) |
|---|---|
| savs | presence (quick) / every family |
| nshot | presence (quick) / presence, depth, spatial (POPE, InstaOrder depth, CLEVR) |
| shuffled | presence (POPE); broken pairs also scored against their true answers from the scenes |
| prompts | occlusion: "obstructing" -> hiding, occluding, random strings (InstaOrder occ.) |
| transfer | probe on presence, validate on spatial |
| metric | occlusion (InstaOrder occ.) |
| token | presence (POPE) |
| overlap | every family's probing set |
| probe-size | presence (quick) / presence, attribute, spatial, counting |

An experiment whose families are missing is skipped (the reason goes to `index.json`). Each
writes `<name>.json`, `<name>.md` and its figure into `out_dir`; `index.json` lists them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.experiments._common import CACHE_DIR, Dataset, ExperimentOptions, ExperimentResult
from superneurons.experiments.registry import get_experiment
from superneurons.experiments.workspace import Workspace
from superneurons.utils.files import json_text

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

INDEX_FILE = "index.json"
_PRESENCE = re.compile(r"^Is there an? (\w+) (\w+) in the image\?")


@lru_cache(maxsize=16)
def _scene_objects(scenes_file: str) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    with open(scenes_file, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                out[d["id"]] = {(o["color"], o["shape"]) for o in d["objects"]}
    return out


def synth_presence_truth(sample: Sample) -> str | None:
    """The true answer of a synthetic presence question about the sample's image, from the scene
    description (`<split>/scenes.jsonl` beside `<split>/images/<scene id>.png`); None if unknown."""
    m = _PRESENCE.match(sample.question)
    if m is None or not isinstance(sample.image, (str, Path)):
        return None
    image = Path(sample.image)
    scenes = image.parent.parent / "scenes.jsonl"
    if not scenes.is_file():
        return None
    objects = _scene_objects(str(scenes)).get(image.stem)
    if objects is None:
        return None
    return "yes" if (m.group(1), m.group(2)) in objects else "no"


def demo_plan(quick: bool) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(experiment, families in order, params). A family list of ["*"] means every family."""
    return [
        ("savs", ["presence"] if quick else ["*"], {}),
        ("nshot", ["presence"] if quick else ["presence", "depth", "spatial"],
         {"shots": (0, 1, 3) if quick else (0, 1, 3, 5)}),
        ("shuffled", ["presence"], {"relabel": synth_presence_truth}),
        ("prompts", ["occlusion"], {"word": "obstructing", "alternatives": ("hiding", "occluding"),
                                    "model_on_probe": not quick}),
        ("transfer", ["presence", "spatial"], {}),
        ("metric", ["occlusion"], {}),
        ("token", ["presence"], {}),
        ("overlap", ["*"], {}),
        ("probe-size", ["presence"] if quick else ["presence", "attribute", "spatial", "counting"],
         {"sizes": (10, 40, 100, 3000) if quick else (10, 40, 100, 300, 1000, 3000)}),
    ]


def run_demo_experiments(vlm: VLM, families: Mapping[str, tuple[Sequence[Sample], Sequence[Sample]]],
                         out_dir: str | Path, quick: bool = False, options: ExperimentOptions | None = None,
                         only: Sequence[str] | None = None) -> dict[str, ExperimentResult]:
    """Run the paper's comparisons and ablations on the demo model; `families[name] = (probe, val)`.

    Returns {experiment name: result} (each with `.rows`, `.figures`, `.files`); `only` restricts
    the experiments run. Progress goes to stderr through rich.
    """
    from rich.console import Console

    console = Console(stderr=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, ExperimentResult] = {}
    skipped: dict[str, str] = {}
    with Workspace(vlm, options, out / CACHE_DIR) as ws:
        for name, wanted, params in demo_plan(quick):
            if only is not None and name not in only:
                continue
            exp = get_experiment(name)
            names = list(families) if wanted == ["*"] else [f for f in wanted if f in families]
            missing = [] if wanted == ["*"] else [f for f in wanted if f not in families]
            if missing or len(names) < exp.min_datasets:
                skipped[name] = f"needs famil{'ies' if len(wanted) > 1 else 'y'} {', '.join(wanted)}"
                continue
            console.print(f"[bold]experiment[/] {name} on {', '.join(names)}")
            datasets = [Dataset(f, list(families[f][0]), list(families[f][1])) for f in names]
            results[name] = exp.load()(ws, datasets, out_dir=out, **params)
    index = {"experiments": {n: {"title": r.title, "paper": r.paper, "files": [p.name for p in r.files]}
                             for n, r in results.items()},
             "skipped": skipped, "quick": quick, "model": vlm.name_or_path}
    (out / INDEX_FILE).write_text(json_text(index) + "\n", encoding="utf-8")
    return results
