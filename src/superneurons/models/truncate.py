"""Truncated loading: a VLM with only the decoder layers 0..k, read from the checkpoint's safetensors.

Super Neurons stop the forward after layer L*; everything above it (upper decoder layers, final
norm, LM head) is dead weight. `load_truncated_model(path, max_layer=k)` builds the model from a
config with `num_hidden_layers = k + 1`, parameters on the meta device (no memory, no random
init; buffers such as RoPE frequencies are computed as usual), removes the final norm and the LM
head, then reads only the weights the truncated model holds:

1. the checkpoint's `model.safetensors.index.json` (or the single `model.safetensors` header)
   says which file holds which key; shards holding none of the needed keys are never opened
   (for a hub id: never downloaded);
2. checkpoint keys are renamed to the model's parameter names with transformers' own
   conversion mapping (e.g. LLaVA's `language_model.model.layers.0...` ->
   `model.language_model.layers.0...`), and a key is read with `safe_open(...).get_tensor` only
   if the truncated model has that parameter;
3. tensors are cast to `dtype`, moved to `device` and assigned shard by shard.

So a 7B model exiting at L*=1 holds the vision tower, projector, embeddings and 2 decoder layers.
The returned `LoadReport` lists the files opened and the keys read / skipped, which proves that
the upper layers were never loaded.

`load_model(path, max_layer=k)` (superneurons.models) wraps this: the `VLM` it returns has
`num_layers == k + 1`, `max_layer == k`, and the *full* checkpoint's fingerprint, so stores and
classifiers made with the full model stay compatible. Calling the removed final norm or LM head
(a full forward, `generate`, `token="last"`) raises a ModelError that says to load without
`max_layer`.

`checkpoint_sketch` reads the fingerprint's weight sketch from the same files (a few rows per
tensor), so quantized or sharded loads are fingerprinted like the weights on disk.

    >>> vlm = load_model("llava-hf/llava-1.5-7b-hf", max_layer=1)      # doctest: +SKIP
    >>> vlm.num_layers, vlm.load_report.files_skipped                # doctest: +SKIP
    (2, ['model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'])
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superneurons.errors import ModelError
from superneurons.models.fingerprint import SKETCH_BITS, config_fingerprint, sample_positions, sketch_hex

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from superneurons.models.base import VLM

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
#: from_pretrained keyword arguments the truncated loader understands (hub access, attention kernel).
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder")
SUPPORTED_KWARGS = (*HUB_KWARGS, "attn_implementation")


@dataclass
class LoadReport:
    """What a truncated load read: checkpoint files opened / never opened, keys read / skipped.

    `keys_loaded` and `keys_skipped` are checkpoint key names (before renaming); `num_params` is
    the parameter count of the truncated model.
    """

    max_layer: int
    files_opened: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    keys_loaded: list[str] = field(default_factory=list)
    keys_skipped: list[str] = field(default_factory=list)
    num_params: int = 0

    def summary(self) -> str:
        return (f"decoder layers 0..{self.max_layer}: read {len(self.keys_loaded)} tensors from "
                f"{len(self.files_opened)} file(s), skipped {len(self.keys_skipped)} tensors"
                + (f" and {len(self.files_skipped)} file(s)" if self.files_skipped else "")
                + f"; {self.num_params:,} parameters")


class RemovedModule(torch.nn.Module):
    """Stands in for a module a truncated model does not load (final norm, LM head); calling it raises."""

    def __init__(self, what: str, max_layer: int) -> None:
        super().__init__()
        self.what, self.max_layer = what, max_layer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ModelError(f"the {self.what} was not loaded: this model is truncated after decoder layer "
                         f"{self.max_layer} (load_model(..., max_layer={self.max_layer})); it can only run "
                         "forwards that stop at or before that layer. Load without max_layer (or --truncate) "
                         "for generation, token='last' or logits")

    def extra_repr(self) -> str:
        return f"removed {self.what}, truncated after layer {self.max_layer}"


def truncated_config(config: Any, max_layer: int) -> Any:
    """A deep copy of `config` whose text decoder has `max_layer + 1` layers (per-layer lists cut too)."""
    cfg = copy.deepcopy(config)
    text = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    total = int(text.num_hidden_layers)
    if not 0 <= max_layer < total:
        raise ModelError(f"max_layer={max_layer} is outside the model's decoder layers 0..{total - 1}; "
                         f"pass a layer index below {total} (the Super Neurons' exit layer L*)")
    text.num_hidden_layers = max_layer + 1
    for name in ("layer_types", "mlp_only_layers", "sliding_window_layers"):
        value = getattr(text, name, None)
        if isinstance(value, list) and len(value) == total:
            setattr(text, name, value[:max_layer + 1])
    cross = getattr(text, "cross_attention_layers", None)  # Mllama: indices of the cross-attention layers
    if isinstance(cross, list):
        text.cross_attention_layers = [i for i in cross if i <= max_layer]
    return cfg


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create module parameters on the meta device (no memory, init is a no-op); buffers stay real."""
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            p = module._parameters[name]
            module._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def _language_model(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "model", model)
    lm = getattr(inner, "language_model", None)
    return lm if lm is not None else model.get_decoder()


def _strip_head(model: PreTrainedModel, max_layer: int) -> None:
    """Replace the final norm and the LM head by `RemovedModule`s (their weights are then never read)."""
    lm = _language_model(model)
    if hasattr(lm, "norm"):
        lm.norm = RemovedModule("final norm", max_layer)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        for name, child in model.named_children():
            if child is head:
                setattr(model, name, RemovedModule("LM head", max_layer))


def checkpoint_map(name_or_path: str, hub: dict[str, Any]) -> tuple[dict[str, str], Callable[[str], str]]:
    """(checkpoint key -> file name, file name -> local path) for a folder or hub id with safetensors;
    a ModelError when it has none."""
    local = Path(name_or_path)
    sub = hub.get("subfolder") or ""
    if local.is_dir():
        root = local / sub

        def resolve(name: str) -> str:
            return str(root / name)

        if (root / INDEX_NAME).is_file():
            return dict(json.loads((root / INDEX_NAME).read_text())["weight_map"]), resolve
        if (root / SINGLE_NAME).is_file():
            return _single_file_map(resolve(SINGLE_NAME)), resolve
        raise ModelError(f"{root} has no {SINGLE_NAME} or {INDEX_NAME}: truncated loading reads safetensors "
                         "checkpoints only; convert the weights (save_pretrained) or load without max_layer")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    kwargs = {k: v for k, v in hub.items() if k in HUB_KWARGS and v is not None}

    def fetch(name: str) -> str:
        return hf_hub_download(name_or_path, name, **kwargs)

    try:
        index = fetch(INDEX_NAME)
    except EntryNotFoundError:
        try:
            return _single_file_map(fetch(SINGLE_NAME)), fetch
        except EntryNotFoundError as exc:
            raise ModelError(f"{name_or_path!r} has no safetensors weights: truncated loading needs "
                             f"{SINGLE_NAME} or {INDEX_NAME}; load without max_layer") from exc
    except OSError as exc:
        raise ModelError(f"cannot fetch the weight index of {name_or_path!r} ({exc}); check the hub id, "
                         "network or HF cache, or pass a local folder") from exc
    return dict(json.loads(Path(index).read_text())["weight_map"]), fetch


def _single_file_map(path: str) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return dict.fromkeys(f.keys(), Path(path).name)


def _renamer(model: PreTrainedModel) -> Callable[[str], str]:
    """checkpoint key -> model parameter name, with transformers' checkpoint conversion mapping."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:  # an older/newer layout: keys must already match
        return lambda key: key
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if not isinstance(t, WeightRenaming)]
    meta = dict.fromkeys(model.state_dict())
    prefix = getattr(model, "base_model_prefix", None)

    def rename(key: str) -> str:
        new, converter = rename_source_key(key, renamings, converters, prefix, meta)
        if converter is not None and new in meta:
            raise ModelError(f"checkpoint key {key!r} needs a weight conversion ({converter}) that truncated "
                             "loading does not perform; load this model without max_layer")
        return new

    return rename


def load_truncated_model(name_or_path: str, max_layer: int, dtype: torch.dtype = torch.float32,
                         device: str | torch.device = "cpu", config: Any = None,
                         **kwargs: Any) -> tuple[PreTrainedModel, LoadReport]:
    """Build `name_or_path`'s model with decoder layers 0..`max_layer` only and load just their weights.

    Returns (model in eval mode, LoadReport). `config` (the full `AutoConfig`) is read from the
    checkpoint when not given; it is not modified. `kwargs`: hub access (`revision`, `cache_dir`,
    `token`, `local_files_only`, `subfolder`) and `attn_implementation`.
    """
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForImageTextToText

    unknown = sorted(set(kwargs) - set(SUPPORTED_KWARGS))
    if unknown:
        raise ModelError(f"truncated loading does not take {', '.join(unknown)}; it accepts "
                         f"{', '.join(SUPPORTED_KWARGS)} (device_map is for full models: pass device=)")
    name_or_path = str(name_or_path)
    if config is None:
        config = AutoConfig.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k in HUB_KWARGS})
    cfg = truncated_config(config, max_layer)
    build_kwargs: dict[str, Any] = {"dtype": dtype}
    if kwargs.get("attn_implementation"):
        build_kwargs["attn_implementation"] = kwargs["attn_implementation"]
    with _parameters_on_meta():
        model = AutoModelForImageTextToText.from_config(cfg, **build_kwargs)
    _strip_head(model, max_layer)
    wanted = model.state_dict()
    weight_map, resolve = checkpoint_map(name_or_path, kwargs)

    rename = _renamer(model)
    plan: dict[str, list[tuple[str, str]]] = {}  # file -> [(checkpoint key, model key)]
    report = LoadReport(max_layer=max_layer)
    for key, file in weight_map.items():
        target = rename(key)
        if target in wanted:
            plan.setdefault(file, []).append((key, target))
        else:
            report.keys_skipped.append(key)
    report.files_skipped = sorted(set(weight_map.values()) - set(plan))
    _tie_missing(model, wanted, weight_map, rename, plan)

    dev = torch.device(device)
    loaded: set[str] = set()
    for file in sorted(plan):
        path = resolve(file)
        report.files_opened.append(file)
        part: dict[str, torch.Tensor] = {}
        with safe_open(path, framework="pt") as f:
            for key, target in plan[file]:
                t = f.get_tensor(key)
                if t.is_floating_point():
                    t = t.to(dtype)
                part[target] = t.to(dev)
                report.keys_loaded.append(key)
                loaded.add(target)
        model.load_state_dict(part, strict=False, assign=True)
        del part
    missing = sorted(n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.device.type == "meta")
    if missing:
        raise ModelError(f"{name_or_path!r}: the checkpoint has no weights for {missing[:4]}"
                         f"{' ...' if len(missing) > 4 else ''}; it does not match its config: load it without "
                         "max_layer to see transformers' own report")
    model.to(dev)  # the buffers computed at build time (RoPE frequencies, position ids)
    report.num_params = sum(p.numel() for p in model.parameters())
    return model.eval(), report


def _tie_missing(model: PreTrainedModel, wanted: dict[str, Any], weight_map: dict[str, str],
                 rename: Callable[[str], str], plan: dict[str, list[tuple[str, str]]]) -> None:
    """A tied parameter saved only under its twin's name (e.g. embeddings stored as `lm_head.weight`)."""
    planned = {t for pairs in plan.values() for _, t in pairs}
    tied = getattr(model, "_tied_weights_keys", None) or {}
    if not isinstance(tied, dict):
        return
    by_target = {rename(k): k for k in weight_map}
    for saved_as, kept in tied.items():
        if kept in wanted and kept not in planned and saved_as in by_target:
            key = by_target[saved_as]
            plan.setdefault(weight_map[key], []).append((key, kept))


def mark_truncated(vlm: VLM, full_config: Any, max_layer: int, report: LoadReport) -> VLM:
    """Give a VLM built on a truncated model the full checkpoint's fingerprint and its truncation facts.

    Sets `vlm.max_layer` (k), `vlm.full_num_layers` (the checkpoint's decoder depth),
    `vlm.load_report` and `vlm.fingerprint` (of the full config, so artifacts stay compatible).
    """
    text = full_config.get_text_config(decoder=True) if hasattr(full_config, "get_text_config") else full_config
    vlm.max_layer = max_layer  # type: ignore[attr-defined]
    vlm.full_num_layers = int(text.num_hidden_layers)  # type: ignore[attr-defined]
    vlm.load_report = report  # type: ignore[attr-defined]
    vlm.fingerprint = config_fingerprint(full_config, vlm.full_num_layers, vlm.hidden_size)  # type: ignore[attr-defined]
    vlm.fingerprint["weights"] = vlm.weight_sketch()
    return vlm


def checkpoint_sketch(name_or_path: str, model: PreTrainedModel, param_names: list[str], bits: int = SKETCH_BITS,
                      **hub: Any) -> str | None:
    """`fingerprint.weight_sketch` of the model parameters `param_names` (in order), read from the
    checkpoint's safetensors files instead of memory: the same answer for the same checkpoint loaded
    in any dtype, quantized (packed tensors) or sharded. Reads only the sampled rows (`get_slice`).
    None when the checkpoint has no safetensors or lacks one of the tensors (then sketch memory)."""
    from safetensors import safe_open

    try:
        weight_map, resolve = checkpoint_map(str(name_or_path), hub)
    except (ModelError, OSError, ValueError):
        return None
    rename = _renamer(model)
    by_param = {}
    for key, file in weight_map.items():
        try:
            by_param.setdefault(rename(key), (key, file))
        except ModelError:
            continue
    if any(n not in by_param for n in param_names):
        return None
    per = max(1, bits // len(param_names))
    signs = []
    for name in param_names:
        key, file = by_param[name]
        with safe_open(resolve(file), framework="pt") as f:
            part = f.get_slice(key)
            shape = part.get_shape()
            row = math.prod(shape[1:])  # values per slice along the first axis
            values = torch.stack([part[int(i) // row:int(i) // row + 1].reshape(-1)[int(i) % row]
                                  for i in sample_positions(math.prod(shape), per)])
        if len(shape) < 2 or not values.is_floating_point():  # e.g. a checkpoint saved pre-quantized
            return None
        signs.append(values > 0)
    return sketch_hex(signs)
