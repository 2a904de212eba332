"""Classifiers on the Hugging Face Hub: download one, push one with its model card.

Laid out the way SAELens shares SAEs: one Hub repo per collection, one subfolder per classifier
(`user/repo` + `pope/`), each holding `classifier.safetensors`, `classifier.json` and a
`README.md` card (`library_name: superneurons`, `base_model` the probed model,
`base_model_relation: adapter`, the probe and validation metrics, the exact prompt template).
All `huggingface_hub` calls of the library are here; `SuperNeuronClassifier.from_pretrained` and
`push_to_hub` call in.

    >>> folder = classifier_folder("user/super-neurons", subfolder="pope")   # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.constants import (
    CLASSIFIER_CONFIG,
    CLASSIFIER_WEIGHTS,
    LIBRARY_NAME,
    MODEL_CARD,
    __version__,
)
from superneurons.errors import DataError

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

    from superneurons.inference.classifier import SuperNeuronClassifier

TAGS = ["superneurons", "super-neurons", "early-exit", "visual-question-answering", "interpretability"]
_METRICS = ("accuracy", "precision", "recall", "f1")


def split_hub_id(spec: str, subfolder: str | None = None) -> tuple[str, str | None]:
    """"user/repo/pope" -> ("user/repo", "pope"): a Hub id names at most namespace/name, the rest is a folder."""
    parts = [p for p in str(spec).strip("/").split("/") if p]
    repo_id, rest = "/".join(parts[:2]), "/".join(parts[2:])
    sub = "/".join(p for p in (rest, (subfolder or "").strip("/")) if p) or None
    if (why := _invalid_repo_id(repo_id)) is not None:
        raise DataError(f"{spec!r} is neither a classifier folder on this machine nor a Hub id "
                        f"(user/repo[/subfolder]): {why}")
    return repo_id, sub


def _invalid_repo_id(repo_id: str) -> str | None:
    """Why `repo_id` is no valid Hub id (huggingface_hub's rules), or None."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        return str(exc)
    return None


def _where(repo_id: str, subfolder: str | None, revision: str | None) -> str:
    return f"{repo_id}" + (f" (subfolder {subfolder!r})" if subfolder else "") + (f" at {revision!r}" if revision else "")


def classifier_folder(repo_or_path: str | Path, subfolder: str | None = None, revision: str | None = None,
                      token: str | bool | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local folder of a classifier: `repo_or_path` itself when it is a folder, else its Hub snapshot.

    A Hub id is fetched with `snapshot_download`, only the two classifier files of `subfolder`
    (offline, `HF_HUB_OFFLINE=1`, from the local cache). Errors name the repo, folder and revision.
    """
    local = Path(repo_or_path).expanduser()
    if local.is_dir():
        return local / subfolder if subfolder else local
    repo_id, sub = split_hub_id(str(repo_or_path), subfolder)
    prefix = f"{sub}/" if sub else ""
    from huggingface_hub import snapshot_download

    try:
        root = snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                 allow_patterns=[prefix + CLASSIFIER_WEIGHTS, prefix + CLASSIFIER_CONFIG],
                                 library_name=LIBRARY_NAME, library_version=__version__)
    except (OSError, ValueError) as exc:  # not found, gated, offline and not cached, bad revision
        raise DataError(f"cannot get the classifier {_where(repo_id, sub, revision)} from the Hub or its cache "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check the id, "
                        "subfolder and revision, log in for a private repo, or pass a local classifier folder") from exc
    folder = Path(root) / sub if sub else Path(root)
    if not all((folder / name).is_file() for name in (CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG)):
        raise DataError(f"{_where(repo_id, sub, revision)} holds no {CLASSIFIER_WEIGHTS} + {CLASSIFIER_CONFIG}"
                        f"{' (offline: only what is cached)' if _offline() else ''}; name the subfolder of the "
                        "classifier (user/repo/SUBFOLDER or subfolder=...)")
    return folder


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# ---- the model card --------------------------------------------------------------------------------------
def _is_hub_id(name: str) -> bool:
    return bool(name) and not Path(name).expanduser().exists() and _invalid_repo_id(name) is None


def _pct(v: Any) -> str:
    return f"{100 * float(v):.1f}" if isinstance(v, int | float) else "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _probe_section(cfg: dict[str, Any]) -> str:
    meta = cfg.get("meta") or {}
    agg = "vote" if cfg.get("aggregation") == "fraction" else cfg.get("aggregation", "mean")
    rows = []
    if chosen := meta.get("chosen"):
        rows.append([f"Super Neurons ({agg}), SNt {chosen.get('snt')}, K={chosen.get('k')}",
                     *(_pct(chosen.get(f"{agg}_{m}")) for m in _METRICS)])
    if best := meta.get("best_single"):
        rows.append([f"best single neuron (layer {best.get('layer')}, neuron {best.get('neuron')})",
                     *(_pct(best.get(m)) for m in _METRICS)])
    n = meta.get("probe_samples")
    if not rows:
        return "The classifier records no probe metrics (its SNt or K was set by hand)."
    return (f"On the probing set ({n if n is not None else 'an unrecorded number of'} samples; "
            "the SNt sweep chose the set):\n\n" + _table(["", *_METRICS], rows))


def _validation_section(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "No validation metrics were given at push time (`superneurons push --metrics metrics.json`)."
    if not isinstance(metrics, dict):
        raise DataError(f"validation metrics must be a JSON object (the output of `superneurons evaluate --out` or "
                        f"{{name: value}}), got {type(metrics).__name__}")
    methods = metrics.get("methods")
    if isinstance(methods, dict):  # the JSON of `superneurons evaluate --out`
        rows = [[name, *(_pct(m.get(k)) for k in _METRICS)] for name, m in methods.items() if isinstance(m, dict)]
        head = f"On {metrics.get('n', '?')} labelled validation samples (`superneurons evaluate`):\n\n"
        return head + _table(["method", *_METRICS], rows)
    return _table(["metric", "value"], [[str(k), f"{v:.4g}" if isinstance(v, float) else str(v)]
                                       for k, v in metrics.items()])


def model_card(config: dict[str, Any], repo_id: str, subfolder: str | None = None,
               metrics: dict[str, Any] | None = None) -> ModelCard:
    """The card of one classifier (`config` is `SuperNeuronClassifier.to_config()`).

    `metrics`: validation results, the JSON written by `superneurons evaluate --out` or a flat
    {name: value} mapping.
    """
    from huggingface_hub import ModelCard, ModelCardData

    model, revision = str(config.get("model") or ""), config.get("model_revision")
    fp = config.get("fingerprint") or {}
    extra: dict[str, Any] = {}
    if _is_hub_id(model):
        extra = {"base_model": model, "base_model_relation": "adapter"}
        if revision:
            extra["base_model_revision"] = revision
    data = ModelCardData(library_name=LIBRARY_NAME, tags=[*TAGS, str(fp.get("architecture", "vlm"))], **extra)
    spec = f"{repo_id}/{subfolder}" if subfolder else repo_id
    fmt = config.get("question_format") or {}
    fmt_line = (f"Questions of the probing set all start with `{fmt.get('prefix', '')!r}` and end with "
                f"`{fmt.get('suffix', '')!r}`." if fmt else "The classifier records no question format.")
    body = f"""
# Super Neuron classifier{f' `{subfolder}`' if subfolder else ''} for {model or 'a VLM'}

K = {config.get('k')} Super Neurons ({config.get('metric')}, SNt {config.get('snt')}) of
{model or 'the probed model'}{f' (revision `{revision}`)' if revision else ''}, aggregated by
`{config.get('aggregation')}` at the `{config.get('token')}` token. The forward stops after decoder
layer L* = {config.get('exit_layer')} of {fp.get('num_layers')} (SN layers {config.get('layers_needed')}).
Made with {LIBRARY_NAME} {config.get('library_version', '')}, an implementation of *Taking Shortcuts for
Categorical VQA Using Super Neurons* (Musacchio et al.).

## Use

```python
from superneurons import SuperNeuronClassifier, load_samples

clf = SuperNeuronClassifier.from_pretrained("{repo_id}"{f', subfolder="{subfolder}"' if subfolder else ''})
vlm = clf.load_model()                       # only layers 0..L* are read (where exact)
out = clf.predict(vlm, load_samples("questions.jsonl"))
```

```bash
superneurons predict --classifier {spec} --model {model or 'MODEL'} --data questions.jsonl --out preds.jsonl
lmms-eval --model {LIBRARY_NAME} --model_args classifier={spec},pretrained={model or 'MODEL'},truncate=true --tasks pope
```

## Prompt

Super Neurons hold for the prompt they were found with. The exact prompt template (`{{question}}` is
replaced by the question):

```
{config.get('prompt_template')}
```

{fmt_line}

## Probe metrics

{_probe_section(config)}

## Validation metrics

{_validation_section(metrics)}

## Model fingerprint

Architecture `{fp.get('architecture')}`, config sha256 `{fp.get('config_hash')}`, weight sketch
`{fp.get('weights')}`: `predict` refuses another checkpoint unless `strict=False`.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _root_card(card: ModelCard, repo_id: str) -> ModelCard:
    """The repo's own README when classifiers live in subfolders: the same metadata, how to load one."""
    from huggingface_hub import ModelCard

    body = f"""
# Super Neuron classifiers

One classifier per subfolder, each with its own README (metrics, prompt template). Load one with

```python
from superneurons import SuperNeuronClassifier

clf = SuperNeuronClassifier.from_pretrained("{repo_id}", subfolder="SUBFOLDER")
```
"""
    return ModelCard(f"---\n{card.data.to_yaml()}\n---\n{body}")


def push_classifier(clf: SuperNeuronClassifier, repo_id: str, subfolder: str | None = None, private: bool = False,
                    token: str | None = None, metrics: dict[str, Any] | None = None,
                    commit_message: str | None = None) -> CommitInfo:
    """Create `repo_id` if needed and upload the classifier files + card into `subfolder` in one commit.

    With a subfolder, a repo without a root README also gets one (same metadata, how to load a
    subfolder); an existing one is left as it is. Returns the upload's `CommitInfo`.
    """
    from huggingface_hub import HfApi

    repo_id, sub = split_hub_id(repo_id, subfolder)
    api = HfApi(token=token, library_name=LIBRARY_NAME, library_version=__version__)
    card = model_card(clf.to_config(), repo_id, sub, metrics)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="superneurons-push-") as tmp:
            clf.save(tmp, lock=False)  # a private temporary folder: no lock file uploaded
            card.save(Path(tmp) / MODEL_CARD)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, path_in_repo=sub,
                                     commit_message=commit_message or f"Add Super Neuron classifier {sub or ''}".strip())
        if sub and not api.file_exists(repo_id, MODEL_CARD):
            api.upload_file(path_or_fileobj=str(_root_card(card, repo_id)).encode("utf-8"), path_in_repo=MODEL_CARD,
                            repo_id=repo_id, commit_message="Add the repo card")
    except (OSError, ValueError) as exc:  # no token, no write access, offline, Hub errors
        raise DataError(f"cannot push to {_where(repo_id, sub, None)} ({type(exc).__name__}: {exc}); log in with "
                        "`hf auth login` or pass a write token, and check the repo id") from exc
    return info
