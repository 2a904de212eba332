"""`SuperNeuronClassifier`: a saved set of Super Neurons that answers yes/no with early exit (Alg. 2).

The artifact is everything inference needs and nothing else: which neurons (layer, unit), their
thresholds and rules, the aggregation, and what they were found with (model id, revision and
fingerprint, prompt template, the probing questions' format, token position). Prediction runs the
model only up to the deepest SN layer L* (`exit_layer`) and records only the SN layers, then
aggregates the K scalars.

On disk (`save(dir)`): `classifier.safetensors` (tensors `layers`, `neurons`, `alpha`, `rule`,
`scores`) + `classifier.json` (everything else). Never pickled. `from_pretrained` also reads a
Hub repo (one subfolder per classifier) and `push_to_hub` publishes one with a model card
(`superneurons.inference.hub`).

    >>> clf = SuperNeuronClassifier.from_store(select_super_neurons(scores, snt=0.92), store)  # doctest: +SKIP
    >>> clf.save("clf/")                                                                     # doctest: +SKIP
    >>> out = SuperNeuronClassifier.load("clf/").predict(vlm, samples)                       # doctest: +SKIP
    >>> clf = SuperNeuronClassifier.from_pretrained("user/super-neurons", subfolder="pope")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.activations.extract import capture
from superneurons.activations.store import ActivationStore
from superneurons.config import ScoreConfig, SelectConfig, configure, split_options
from superneurons.constants import (
    AGGREGATIONS,
    CLASSIFIER_CONFIG,
    CLASSIFIER_WEIGHTS,
    TOKENS,
    Aggregation,
    Token,
    __version__,
)
from superneurons.data.question_format import QuestionFormat
from superneurons.errors import DataError, ModelError
from superneurons.inference.aggregation import aggregate
from superneurons.inference.hub import classifier_folder, push_classifier
from superneurons.inference.saved import read_tensors
from superneurons.models.fingerprint import same_weights
from superneurons.models.loading import load_model
from superneurons.selection.driver import fit
from superneurons.selection.sets import SuperNeurons
from superneurons.utils.files import atomic_write_bytes, json_text, read_json, write_json
from superneurons.utils.locking import output_lock

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

FORMAT_VERSION = 1
_TENSORS = ("layers", "neurons", "alpha", "rule", "scores")


@dataclass
class ClassifierOutput:
    """`preds` LongTensor[N] (1 yes / 0 no), `scores` float32 [N] (mean margin or yes-fraction),
    `acts` float32 [N, K] (the SN activations)."""

    preds: Tensor
    scores: Tensor
    acts: Tensor


@dataclass
class SuperNeuronClassifier:
    """Super Neurons + how to run them. `exit_layer` (L*) is the deepest SN layer.

    `model_revision` is the Hub commit of the probed checkpoint (None for a local folder or an
    older artifact); `question_format` what every probing question shared (None when unknown).
    """

    sns: SuperNeurons
    fingerprint: dict[str, Any]
    prompt_template: str
    token: Token = "first"
    aggregation: Aggregation = "mean"
    model: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    model_revision: str | None = None
    question_format: QuestionFormat | None = None

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise DataError(f"aggregation {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        if self.token not in TOKENS:
            raise DataError(f"token {self.token!r} is not one of {', '.join(TOKENS)}")
        if self.sns.k == 0:
            raise DataError("a classifier needs at least one Super Neuron")
        self._check_indices(int(self.fingerprint.get("num_layers", 0)), int(self.fingerprint.get("hidden_size", 0)),
                            "its recorded model")

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_store(cls, sns: SuperNeurons, store: Any, aggregation: Aggregation = "mean",
                   meta: dict[str, Any] | None = None) -> SuperNeuronClassifier:
        """Wrap `sns` with the model fingerprint, prompt template and token of the store they came from."""
        m = store.manifest if hasattr(store, "manifest") else store
        missing = [k for k in ("fingerprint", "prompt_template", "token") if k not in m]
        if missing:
            raise DataError(f"the store manifest lacks {', '.join(missing)}; probe again with this library")
        return cls(sns=sns, fingerprint=dict(m["fingerprint"]), prompt_template=str(m["prompt_template"]),
                   token=str(m["token"]), aggregation=aggregation, model=str(m.get("model", "")),
                   meta=dict(meta or {}), model_revision=m.get("model_revision"),
                   question_format=QuestionFormat.from_dict(m.get("question_format")))

    @property
    def exit_layer(self) -> int:
        """L*: the forward stops after this layer."""
        return self.sns.exit_layer

    @property
    def layers_needed(self) -> list[int]:
        """The distinct SN layers, ascending: the only ones captured at prediction time."""
        return self.sns.layers_needed

    # ---- checks ----------------------------------------------------------------------------
    def _check_indices(self, num_layers: int, hidden_size: int, what: str) -> None:
        bad_l = self.sns.layers[(self.sns.layers < 0) | (self.sns.layers >= num_layers)]
        if bad_l.numel():
            raise ModelError(f"SN layer {int(bad_l[0])} is out of range for {what} (layers 0..{num_layers - 1}); "
                             "the classifier was built for a deeper model: probe and select on this model")
        bad_n = self.sns.neurons[(self.sns.neurons < 0) | (self.sns.neurons >= hidden_size)]
        if bad_n.numel():
            raise ModelError(f"SN neuron {int(bad_n[0])} is out of range for {what} (hidden size {hidden_size}); "
                             "probe and select on this model")
        if bool(((self.sns.rule != 1) & (self.sns.rule != -1)).any()):
            raise DataError("SN rules must be +1 or -1; the classifier file is damaged: select again")

    def check_compatible(self, vlm: VLM, strict: bool = True) -> None:
        """Raise a ModelError if `vlm` is not the model the SNs were found in.

        Hidden size and layer count are always checked (indices must exist); with `strict` the
        architecture, config hash and prompt template must match too.
        """
        fp = self.fingerprint
        if int(fp.get("hidden_size", -1)) != vlm.hidden_size:
            raise ModelError(f"the classifier was built for hidden size {fp.get('hidden_size')} "
                             f"({fp.get('architecture')}), the model has {vlm.hidden_size} "
                             f"({vlm.fingerprint.get('architecture')}); load {self.model or 'the probed model'!r}")
        max_layer = getattr(vlm, "max_layer", None)
        if max_layer is not None and self.exit_layer > max_layer:
            raise ModelError(f"{vlm.name_or_path!r} was loaded truncated, with decoder layers 0..{max_layer} only, but "
                             f"these SNs read layer {self.exit_layer}: load it for this classifier "
                             f"(clf.load_model(), layers 0..{self.exit_layer}) or whole (truncate=False)")
        self._check_indices(getattr(vlm, "full_num_layers", vlm.num_layers), vlm.hidden_size,
                            f"model {vlm.name_or_path!r}")
        if not strict:
            return
        for key in ("architecture", "config_hash", "num_layers"):
            if fp.get(key) != vlm.fingerprint.get(key):
                raise ModelError(f"model fingerprint mismatch on {key}: classifier {str(fp.get(key))[:16]!r} "
                                 f"(probed on {self.model!r}) vs model {str(vlm.fingerprint.get(key))[:16]!r} "
                                 f"({vlm.name_or_path!r}); load the probed model or pass strict=False "
                                 "(--no-strict) to use it anyway")
        if not same_weights(fp, vlm.fingerprint):
            raise ModelError(f"model weights differ from the probed model's ({self.model!r}) although the config "
                             f"matches: {vlm.name_or_path!r} looks like another training run of it; load the probed "
                             "checkpoint, probe this one again, or pass strict=False (--no-strict) to use it anyway")
        if self.prompt_template != vlm.prompt_template:
            raise ModelError(f"prompt template mismatch: classifier {self.prompt_template!r} vs model "
                             f"{vlm.prompt_template!r}; SNs only hold for the template they were found with")

    # ---- inference -------------------------------------------------------------------------
    def sn_activations(self, vlm: VLM, samples: Sequence[Sample], batch_size: int = 8,
                       progress: bool = False, strict: bool = True) -> Tensor:
        """float32 [N, K]: the SN activations, from a forward that stops after L* (token "first")."""
        self.check_compatible(vlm, strict=strict)
        exit_layer = self.exit_layer if self.token == "first" else None
        acts = capture(vlm, samples, token=self.token, layers=self.layers_needed, exit_layer=exit_layer,
                       batch_size=batch_size, progress=progress)
        return self.sns.gather(acts)

    def predict_from_acts(self, acts: Tensor, aggregation: Aggregation | None = None) -> ClassifierOutput:
        """Aggregate SN activations [N, K] (columns in `sns` order) into predictions and scores."""
        if acts.dim() != 2 or acts.shape[1] != self.sns.k:
            raise DataError(f"SN activations must be [N, {self.sns.k}], got {list(acts.shape)}")
        preds, scores = aggregate(acts, aggregation or self.aggregation, self.sns.alpha, self.sns.rule)
        return ClassifierOutput(preds=preds, scores=scores, acts=acts.float())

    def predict(self, vlm: VLM, samples: Sequence[Sample], batch_size: int = 8, aggregation: Aggregation | None = None,
                progress: bool = False, strict: bool = True) -> ClassifierOutput:
        """Answer each sample from its SN activations (Alg. 2) with early exit at L*.

        (`superneurons.inference.answer` adds the cascade: SNs when sure, the model when not.)
        """
        return self.predict_from_acts(self.sn_activations(vlm, samples, batch_size, progress, strict), aggregation)

    def load_model(self, name_or_path: str | None = None, truncate: bool | None = None, *, cascade: bool = False,
                   **kwargs: Any) -> VLM:
        """Load the model these SNs were found in (or `name_or_path`) for `predict`.

        By default (`truncate=None`) only what the SNs need is loaded where that is exact: with token
        "first" and no cascade, the vision tower, embeddings and decoder layers 0..L* (no final norm,
        no LM head; `superneurons.models.truncate`), so memory does not grow with the layers above L*.
        `truncate=False` (or `cascade=True`: a cascade resumes deferred samples to the last layer, or
        token "last", or a family / argument the truncated loader does not take) loads the whole
        model; `truncate=True` insists (an error where it cannot). The choice and why are in
        `vlm.load_choice`. `kwargs` go to `load_model` (`dtype`, `device`, `revision`, ...); the
        recorded model is read at its recorded revision unless another is given.
        """
        from superneurons.models.loading import truncation_refusal

        name = name_or_path or self.model
        if not name:
            raise ModelError("the classifier does not record the model it was built with; pass name_or_path")
        if name == self.model and self.model_revision:
            kwargs.setdefault("revision", self.model_revision)
        if truncate and self.token != "first":
            raise ModelError(f"truncate=True needs token 'first'; this classifier reads token {self.token!r}, "
                             "which needs the whole model")
        if truncate and cascade:
            raise ModelError(f"truncate=True loads layers 0..{self.exit_layer} only, but a cascade resumes deferred "
                             "samples to the last layer: load the whole model (truncate=False, --full-model)")
        why = ("asked for (truncate=False / --full-model)" if truncate is False else
               "a cascade resumes deferred samples to the last layer" if cascade else
               f"token {self.token!r} generates the answer first" if self.token != "first" else
               None if truncate else truncation_refusal(name, **kwargs))
        vlm = load_model(name, max_layer=None if why else self.exit_layer, **kwargs)
        full = getattr(vlm, "full_num_layers", vlm.num_layers)
        vlm.load_choice = (f"full model, {full} decoder layers: {why}" if why else  # type: ignore[attr-defined]
                           f"truncated: decoder layers 0..{self.exit_layer} of {full} loaded (exact for these SNs; "
                           "truncate=False / --full-model loads all)")
        return vlm

    # ---- persistence -----------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        s = self.sns
        return {"format_version": FORMAT_VERSION, "library_version": __version__, "k": s.k,
                "exit_layer": self.exit_layer, "layers_needed": self.layers_needed,
                "aggregation": self.aggregation, "token": self.token, "metric": s.metric, "snt": s.snt,
                "top_k": s.top_k, "max_layer": s.max_layer, "model": self.model, "model_revision": self.model_revision,
                "fingerprint": self.fingerprint, "prompt_template": self.prompt_template,
                "question_format": None if self.question_format is None else self.question_format.to_dict(),
                "weights": CLASSIFIER_WEIGHTS, "meta": self.meta}

    def save(self, directory: str | Path, *, lock: bool = True) -> list[Path]:
        """Write `classifier.safetensors` + `classifier.json` into `directory` (each atomically); return both.

        The folder is locked while it is written (`output_lock`); pass `lock=False` when the caller
        already holds its lock (`select` holds it for the whole run).
        """
        from safetensors.torch import save

        out = Path(directory)
        s = self.sns
        tensors = {"layers": s.layers.long(), "neurons": s.neurons.long(), "alpha": s.alpha.to(torch.float64),
                   "rule": s.rule.to(torch.int8), "scores": s.scores.to(torch.float64)}
        weights, config = out / CLASSIFIER_WEIGHTS, out / CLASSIFIER_CONFIG
        with output_lock(out, what="classifier folder") if lock else contextlib.nullcontext():
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(weights, save({k: v.contiguous() for k, v in tensors.items()},
                                             metadata={"format": "pt", "format_version": str(FORMAT_VERSION)}))
            write_json(config, self.to_config())
        return [weights, config]

    @classmethod
    def load(cls, directory: str | Path) -> SuperNeuronClassifier:
        """Read a classifier written by `save`; a missing, damaged or invalid file raises a DataError naming
        it (`superneurons.inference.saved` checks every field)."""
        d = Path(directory)
        weights, config = d / CLASSIFIER_WEIGHTS, d / CLASSIFIER_CONFIG
        for p in (config, weights):
            if not p.is_file():
                raise DataError(f"{d} has no {p.name}: not a classifier folder; create one with "
                                "`superneurons select --out DIR`")
        cfg = read_json(config, DataError, "select again to rewrite it")
        t = read_tensors(weights, cfg, FORMAT_VERSION, _TENSORS, config)
        sns = SuperNeurons(layers=t["layers"].long(), neurons=t["neurons"].long(), scores=t["scores"],
                           alpha=t["alpha"], rule=t["rule"].to(torch.int8), metric=cfg.get("metric", "accuracy"),
                           snt=cfg.get("snt"), top_k=cfg.get("top_k"), max_layer=cfg.get("max_layer"))
        try:
            clf = cls(sns=sns, fingerprint=dict(cfg["fingerprint"]), prompt_template=cfg["prompt_template"],
                      token=cfg.get("token", "first"), aggregation=cfg.get("aggregation", "mean"),
                      model=cfg.get("model", ""), meta=dict(cfg.get("meta") or {}),
                      model_revision=cfg.get("model_revision"),
                      question_format=QuestionFormat.from_dict(cfg.get("question_format")))
        except (DataError, ModelError) as exc:
            raise DataError(f"{config}: {exc}") from None
        if cfg.get("exit_layer") != clf.exit_layer:
            raise DataError(f"{config}: exit_layer {cfg.get('exit_layer')} does not match the SN layers "
                            f"(deepest {clf.exit_layer}); the files do not belong together: select again")
        return clf

    # ---- the Hub ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, repo_or_path: str | Path, subfolder: str | None = None, revision: str | None = None,
                        token: str | bool | None = None, *, cache_dir: str | Path | None = None
                        ) -> SuperNeuronClassifier:
        """`load` a classifier folder, or a Hub repo's: `"user/repo"` with `subfolder` (or `"user/repo/sub"`).

        A Hub classifier is fetched with `huggingface_hub.snapshot_download` (only its two files, at
        `revision`; offline from the cache) and read with `load`.
        """
        return cls.load(classifier_folder(repo_or_path, subfolder, revision, token, cache_dir))

    def push_to_hub(self, repo_id: str, subfolder: str | None = None, private: bool = False,
                    token: str | None = None, *, metrics: dict[str, Any] | None = None,
                    commit_message: str | None = None) -> CommitInfo:
        """Upload the classifier and its model card to `repo_id` (created if missing), into `subfolder`.

        The card (`README.md`) carries `library_name: superneurons`, the probed model as `base_model`
        (`base_model_relation: adapter`) with its revision, the probe metrics, the validation
        `metrics` if given (the JSON of `superneurons evaluate --out`) and the exact prompt template.
        """
        return push_classifier(self, repo_id, subfolder, private, token, metrics, commit_message)


@dataclass
class FitResult:
    """What `fit_classifier` found: the classifier, the SNt sweep table and the chosen row."""

    classifier: SuperNeuronClassifier
    sweep: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    best_single: dict[str, Any]


def fit_classifier(store: Any, select: SelectConfig | None = None, score: ScoreConfig | None = None, *,
                   aggregation: Aggregation = "mean", **options: Any) -> FitResult:
    """Alg. 1 on an activation store (`selection.fit`), wrapped as a classifier.

    Settings: `select` / `score` configs and/or their fields as keywords (`metric`, `snt`, `top_k`,
    `max_layer`, `step`, `depth`, `choose_by`; `alpha`, `polarity`, `per_neuron_alpha`,
    `chunk_layers`, ...). With neither `snt` nor `top_k`, SNt is chosen by the sweep (paper Sec.
    4.2): the candidate whose `choose_by` column (default `"{aggregation}_{metric}"`) is highest on
    the probing set. `store` is an `ActivationStore` or its folder.
    """
    if aggregation not in AGGREGATIONS:
        raise DataError(f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
    sel_opts, score_opts = split_options(options, SelectConfig, ScoreConfig)
    sel_cfg = configure(SelectConfig, select, sel_opts)
    score_cfg = configure(ScoreConfig, score, score_opts)
    if not hasattr(store, "iter_layer_chunks"):
        store = ActivationStore(store)
    found = fit(store, sel_cfg, score_cfg, aggregation=aggregation)
    meta = {"probe_samples": found.probe.scores.num_samples, "alpha": score_cfg.alpha,
            "polarity": score_cfg.polarity, "per_neuron_alpha": score_cfg.per_neuron_alpha, "step": sel_cfg.step,
            "depth": sel_cfg.depth, "chosen": found.chosen, "best_single": found.best_single, "sweep": found.sweep}
    clf = SuperNeuronClassifier.from_store(found.sns, store, aggregation=aggregation, meta=meta)
    return FitResult(classifier=clf, sweep=found.sweep, chosen=found.chosen, best_single=found.best_single)


def prediction_rows(samples: Sequence[Sample], output: ClassifierOutput) -> list[dict[str, Any]]:
    """One JSON-able row per sample: id, answer ("yes"/"no"), prediction (1/0), score, label if known, and
    for a cascade output which path answered ("sn" or "model")."""
    if len(samples) != output.preds.numel():
        raise DataError(f"{len(samples)} samples but {output.preds.numel()} predictions")
    paths = getattr(output, "paths", None)
    rows = []
    for i, (s, p, sc) in enumerate(zip(samples, output.preds.tolist(), output.scores.tolist(), strict=True)):
        rec: dict[str, Any] = {"id": s.id, "answer": "yes" if p == 1 else "no", "prediction": int(p), "score": float(sc)}
        if s.label is not None:
            rec["label"] = s.label
        if paths is not None:
            rec["path"] = paths[i]
        rows.append(rec)
    return rows


def write_predictions(path: str | Path, samples: Sequence[Sample], output: ClassifierOutput) -> Path:
    """JSONL of `prediction_rows`, one line per sample (`superneurons.inference.predictions` writes the same
    rows as it goes, resumably)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = prediction_rows(samples, output)
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(json_text(rec, None) + "\n" for rec in rows)
    return path
