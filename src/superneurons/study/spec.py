"""The study file: one model, the paper's options, and the datasets (TOML, paths relative to the file).

    model = "llava-hf/llava-1.5-7b-hf"      # hub id or local folder
    title = "LLaVA-1.5-7b, paper datasets"   # optional
    [options]                                # all optional; defaults = the paper's protocol
    early_max_layer = [2, 4]                 # an int or a list: one early-exit SN set per value
    experiments = ["overlap", "probe-size"]  # names of `superneurons experiment`, or tables (below)
    [[datasets]]
    name = "pope"
    probe = "runs/pope/probe.jsonl"          # a sample file, or a table of `datasets prepare` arguments
    val = { dataset = "pope", root = "data/pope", split = "val", images = "data/coco/val2014" }
    [[datasets]]
    name = "scienceqa"
    prepare = { dataset = "scienceqa", root = "data/scienceqa", n = 3000, balanced = true }  # both splits

An experiment given as a table, `[options.experiments.prompts]` with `datasets = ["occlusion"]` and
the experiment's parameters (`word = "obstructing"`), runs on those datasets only. Unknown keys,
missing files and bad values raise a `ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from superneurons.constants import MAX_NEW_TOKENS, METRICS, SNT_DEPTH, SNT_STEP, STORE_DTYPES, TOKENS
from superneurons.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CASCADE_MARGINS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_EXPERIMENTS: tuple[str, ...] = ("overlap", "probe-size")
_PREPARE_KEYS = {"dataset", "root", "split", "n", "balanced", "seed", "variant", "images", "annotations",
                 "image_dir", "skip_missing"}
_BOTH_SPLITS_KEYS = (_PREPARE_KEYS - {"split"}) | {"probe_split", "val_split", "val_n"}
_PATH_KEYS = ("root", "images", "annotations", "image_dir")


@dataclass
class StudyOptions:
    """`[options]`: what SNt is optimised for, the capture, the early-exit caps and the extra steps."""

    metric: str = "accuracy"
    token: str = "first"
    alpha: float = 0.0
    step: float = SNT_STEP
    depth: float = SNT_DEPTH
    early_max_layer: list[int] = field(default_factory=lambda: [2])
    experiments: dict[str, dict[str, Any]] = field(default_factory=lambda: {n: {} for n in DEFAULT_EXPERIMENTS})
    bench: bool = True
    generate: bool = True
    cascade: bool = True
    cascade_margins: list[float] = field(default_factory=lambda: list(CASCADE_MARGINS))
    bench_dataset: str | None = None
    bench_batch_size: int | None = None
    bench_exit_layers: list[int] = field(default_factory=list)
    bench_repeats: int = 3
    bench_warmup: int = 1
    batch_size: int = 8
    max_new_tokens: int = MAX_NEW_TOKENS
    seed: int = 0
    store_dtype: str = "float16"


@dataclass
class DataSource:
    """Where one split comes from: a sample `file`, or `prepare` arguments (`datasets prepare`)."""

    file: Path | None = None
    prepare: dict[str, Any] | None = None


@dataclass
class StudyDataset:
    name: str
    probe: DataSource
    val: DataSource


@dataclass
class StudySpec:
    """A parsed study file (`load_study`); `base` is the folder its relative paths start from."""

    model: str
    datasets: list[StudyDataset]
    options: StudyOptions = field(default_factory=StudyOptions)
    title: str | None = None
    base: Path = Path(".")
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


_TYPES: dict[str, tuple[type, ...]] = {
    "metric": (str,), "token": (str,), "alpha": (int, float), "step": (int, float), "depth": (int, float),
    "bench": (bool,), "generate": (bool,), "cascade": (bool,), "bench_dataset": (str,), "bench_batch_size": (int,),
    "bench_repeats": (int,), "bench_warmup": (int,), "batch_size": (int,), "max_new_tokens": (int,),
    "seed": (int,), "store_dtype": (str,),
}


def _fail(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _unknown(table: dict[str, Any], allowed: set[str] | dict[str, Any], where: str) -> None:
    bad = sorted(set(table) - set(allowed))
    if bad:
        raise _fail(where, f"unknown key(s) {', '.join(bad)}; valid keys: {', '.join(sorted(allowed))}")


def _ints(value: Any, key: str, where: str, minimum: int = 0) -> list[int]:
    vals = value if isinstance(value, list) else [value]
    if not vals or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in vals):
        raise _fail(where, f"{key} = {value!r}: write an integer >= {minimum} or a list of them, e.g. [2, 4]")
    return sorted(set(vals))


def _options(raw: dict[str, Any], where: str) -> StudyOptions:
    o = StudyOptions()
    _unknown(raw, set(asdict(o)), where)
    for key, value in raw.items():
        kinds = _TYPES.get(key)
        if kinds is not None and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            raise _fail(where, f"{key} = {value!r}: expected {' or '.join(k.__name__ for k in kinds)}")
        setattr(o, key, value)
    for key, choices in (("metric", METRICS), ("token", TOKENS), ("store_dtype", STORE_DTYPES)):
        if getattr(o, key) not in choices:
            raise _fail(where, f"{key} = {getattr(o, key)!r}: use one of {', '.join(choices)}")
    for key in ("batch_size", "max_new_tokens", "bench_repeats"):
        if getattr(o, key) < 1:
            raise _fail(where, f"{key} = {getattr(o, key)}: use a positive integer")
    if o.bench_batch_size is not None and o.bench_batch_size < 1:
        raise _fail(where, f"bench_batch_size = {o.bench_batch_size}: use a positive integer")
    o.early_max_layer = _ints(raw.get("early_max_layer", o.early_max_layer), "early_max_layer", where)
    o.bench_exit_layers = _ints(raw["bench_exit_layers"], "bench_exit_layers", where) \
        if raw.get("bench_exit_layers") else []
    margins = raw.get("cascade_margins", o.cascade_margins)
    if not isinstance(margins, list) or any(not isinstance(m, (int, float)) or not 0 <= m <= 0.5 for m in margins):
        raise _fail(where, f"cascade_margins = {margins!r}: write a list of numbers in [0, 0.5]")
    o.cascade_margins = [float(m) for m in margins]
    o.experiments = _experiments(raw.get("experiments", list(DEFAULT_EXPERIMENTS)), f"{where}.experiments")
    return o


def _experiments(value: Any, where: str) -> dict[str, dict[str, Any]]:
    from superneurons.experiments.registry import EXPERIMENTS

    if isinstance(value, list):
        if any(not isinstance(v, str) for v in value):
            raise _fail(where, f"{value!r}: write experiment names, e.g. [\"overlap\", \"savs\"]")
        value = {v: {} for v in value}
    if not isinstance(value, dict):
        raise _fail(where, "write a list of experiment names or one table per experiment")
    out = {}
    for name, params in value.items():
        if name not in EXPERIMENTS:
            raise _fail(where, f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
        if not isinstance(params, dict):
            raise _fail(f"{where}.{name}", "write a table of parameters (datasets = [...], ...)")
        ds = params.get("datasets")
        if ds is not None and (not isinstance(ds, list) or any(not isinstance(d, str) for d in ds)):
            raise _fail(f"{where}.{name}", f"datasets = {ds!r}: write a list of dataset names")
        out[name] = dict(params)
    return out


def _source(value: Any, base: Path, where: str, split_keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "write a table of `superneurons datasets prepare` arguments, e.g. "
                           "{ dataset = \"pope\", root = \"data/pope\", split = \"val\" }")
    _unknown(value, split_keys, where)
    from superneurons.data.registry import get_dataset

    for key in ("dataset", "root"):
        if key not in value:
            raise _fail(where, f"missing key {key!r} (the dataset name and the folder it was downloaded to)")
    try:
        ds = get_dataset(str(value["dataset"]))
    except Exception as exc:
        raise _fail(where, str(exc)) from None
    takes = {"images": "image_root", "variant": "variant", "annotations": "annotations", "image_dir": "image_dir"}
    bad = [k for k, opt in takes.items() if k in value and opt not in ds.options]
    if bad:
        raise _fail(where, f"{', '.join(bad)} do(es) not apply to {ds.name}; drop it")
    splits = [value[k] for k in ("split", "probe_split", "val_split") if k in value]
    if any(sp not in ds.splits for sp in splits):
        raise _fail(where, f"split {splits!r}: {ds.name} has splits {', '.join(ds.splits)}")
    if ds.variants and "variant" in value and value["variant"] not in ds.variants:
        raise _fail(where, f"variant = {value['variant']!r}: use one of {', '.join(ds.variants)}")
    out = dict(value)
    for key in _PATH_KEYS:
        if key in out:
            out[key] = str((base / str(out[key])).resolve())
    if not Path(out["root"]).is_dir():
        raise _fail(where, f"root {value['root']!r} is not a folder (relative paths start at {base})")
    for key in ("n", "val_n"):
        if key in out and (not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 1):
            raise _fail(where, f"{key} = {out[key]!r}: use a positive integer")
    return out


def _file(value: str, base: Path, where: str) -> Path:
    p = (base / value).resolve()
    if not p.is_file():
        raise _fail(where, f"file {value!r} not found (relative paths start at {base}); write the sample JSONL "
                           "there or build it with a `prepare` table")
    return p


def _dataset(raw: Any, base: Path, where: str) -> StudyDataset:
    if not isinstance(raw, dict):
        raise _fail(where, "write [[datasets]] tables")
    _unknown(raw, {"name", "probe", "val", "prepare"}, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise _fail(where, "each dataset needs a name = \"...\" (no slashes)")
    both = _source(raw["prepare"], base, f"{where}.prepare", _BOTH_SPLITS_KEYS) if "prepare" in raw else None
    srcs = {}
    for split in ("probe", "val"):
        value = raw.get(split)
        if isinstance(value, str):
            srcs[split] = DataSource(file=_file(value, base, f"{where}.{split}"))
        elif value is not None:
            srcs[split] = DataSource(prepare=_source(value, base, f"{where}.{split}", _PREPARE_KEYS))
            if "split" not in value:
                raise _fail(f"{where}.{split}", "missing key 'split' (train or val)")
        elif both is not None:
            p = {k: v for k, v in both.items() if k not in ("probe_split", "val_split", "val_n")}
            p["split"] = both.get(f"{split}_split", "train" if split == "probe" else "val")
            if split == "val":
                p.pop("n", None)
                p.pop("balanced", None)
                if "val_n" in both:
                    p["n"] = both["val_n"]
            srcs[split] = DataSource(prepare=p)
        else:
            raise _fail(where, f"dataset {name!r} has no {split} set: add {split} = \"FILE.jsonl\" or a prepare table")
    return StudyDataset(name=name, probe=srcs["probe"], val=srcs["val"])


def parse_study(raw: dict[str, Any], base: str | Path = ".", source: str | Path | None = None) -> StudySpec:
    """A `StudySpec` from a parsed TOML table; relative paths start at `base`."""
    where = str(source) if source is not None else "study"
    base = Path(base).resolve()
    _unknown(raw, {"model", "title", "options", "datasets"}, where)
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise _fail(where, "missing model = \"hub/id\" or a local model folder")
    if (base / model).is_dir():
        model = str((base / model).resolve())
    title = raw.get("title")
    if title is not None and not isinstance(title, str):
        raise _fail(where, "title must be a string")
    options = _options(raw.get("options") or {}, f"{where} [options]")
    rows = raw.get("datasets")
    if not isinstance(rows, list) or not rows:
        raise _fail(where, "no [[datasets]]; add at least one with name, probe and val")
    datasets = [_dataset(d, base, f"{where} [[datasets]] #{i + 1}") for i, d in enumerate(rows)]
    names = [d.name for d in datasets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _fail(where, f"dataset name(s) {', '.join(dup)} appear twice; give each dataset its own name")
    if options.bench_dataset is not None and options.bench_dataset not in names:
        raise _fail(f"{where} [options]", f"bench_dataset = {options.bench_dataset!r} is not one of {', '.join(names)}")
    for exp, params in options.experiments.items():
        unknown = [d for d in params.get("datasets", []) if d not in names]
        if unknown:
            raise _fail(f"{where} [options.experiments.{exp}]", f"unknown dataset(s) {', '.join(unknown)}")
    return StudySpec(model=model, datasets=datasets, options=options, title=title, base=base,
                     source=Path(source) if source is not None else None)


def load_study(path: str | Path) -> StudySpec:
    """Read and check a study file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file {str(p)!r} not found; write one (see examples/ and docs/runbook.md)")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc}); fix the line it names") from None
    return parse_study(raw, p.parent, p)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"{type(v).__name__} has no TOML form here")


def study_toml(model: str, datasets: list[dict[str, Any]], options: dict[str, Any] | None = None,
               title: str | None = None, comment: str = "") -> str:
    """The text of a study file (what `load_study` reads); experiments given as a dict become tables."""
    lines = [f"# {c}" for c in comment.splitlines()] + [f"model = {_toml_value(model)}"]
    if title:
        lines.append(f"title = {_toml_value(title)}")
    opts = dict(options or {})
    exps = opts.pop("experiments", None)
    lines += ["", "[options]"] + [f"{k} = {_toml_value(v)}" for k, v in opts.items()]
    if isinstance(exps, dict):
        for name, params in exps.items():
            lines += ["", f"[options.experiments.{json.dumps(name)}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    elif exps is not None:
        lines.insert(lines.index("[options]") + 1, f"experiments = {_toml_value(exps)}")
    for d in datasets:
        lines += ["", "[[datasets]]"] + [f"{k} = {_toml_value(v)}" for k, v in d.items()]
    return "\n".join(lines) + "\n"
