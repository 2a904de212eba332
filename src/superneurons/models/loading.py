"""`load_model(name_or_path)`: `from_pretrained` a hub id or local folder and wrap it in its family's `VLM`.

    >>> vlm = load_model("llava-hf/llava-1.5-7b-hf")            # doctest: +SKIP
    >>> vlm.num_layers, vlm.hidden_size, vlm.prompt_template    # doctest: +SKIP
    (32, 4096, 'USER: <image>\\n{question} ASSISTANT:')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from superneurons.errors import ModelError
from superneurons.models.registry import get_adapter

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from superneurons.models.base import VLM

DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps, else cpu."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"device {device!r} is not valid; use auto, cpu, cuda, cuda:0 or mps") from exc


def resolve_dtype(dtype: str | torch.dtype, device: torch.device, config: Any = None) -> torch.dtype:
    """"auto" -> float32 on cpu; on an accelerator the checkpoint's dtype (bfloat16 if it has none)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cpu":
        return torch.float32
    saved = getattr(config, "dtype", None) if config is not None else None
    if isinstance(saved, str):
        saved = getattr(torch, saved, None)
    return saved if saved in (torch.float16, torch.bfloat16, torch.float32) else torch.bfloat16


def model_from_config(config: Any) -> PreTrainedModel:
    """A randomly initialised image-text-to-text model of `config` (the auto class picks the family);
    tiny test models and benchmarks are built this way."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_config(config)


def truncation_refusal(name_or_path: str, dtype: str | torch.dtype = "auto", device: str | torch.device = "auto",
                       adapter: str | None = None, **from_pretrained_kwargs: Any) -> str | None:
    """Why `load_model(name_or_path, ..., max_layer=k)` with these arguments cannot load truncated, or
    None when it can: the family does not support it, an argument the truncated loader does not take
    (`device_map`, `quantization_config`, ...), or no safetensors checkpoint. Reads the config and the
    weight index only. A config that cannot be read gives None (the load itself then names the error).
    """
    from transformers import AutoConfig

    from superneurons.models.truncate import HUB_KWARGS, SUPPORTED_KWARGS, checkpoint_map

    hub = {k: v for k, v in from_pretrained_kwargs.items() if k in HUB_KWARGS}
    try:
        config = AutoConfig.from_pretrained(str(name_or_path), **hub)
    except (OSError, ValueError):
        return None
    cls = get_adapter(adapter or config.model_type, strict=adapter is not None)
    if not cls.support.truncate:
        return cls.support.refusal("truncated loading", cls.family)
    unknown = sorted(k for k, v in from_pretrained_kwargs.items() if k not in SUPPORTED_KWARGS and v is not None)
    if unknown:
        return f"truncated loading does not take {', '.join(unknown)}"
    try:
        checkpoint_map(str(name_or_path), hub)
    except ModelError as exc:
        return str(exc)
    return None


def load_model(name_or_path: str, dtype: str | torch.dtype = "auto", device: str | torch.device = "auto",
               adapter: str | None = None, max_layer: int | None = None, **from_pretrained_kwargs: Any) -> VLM:
    """Load a VLM with `from_pretrained(name_or_path)` (hub id or local folder) and wrap it.

    `adapter` forces a family by model type (e.g. "llava", or "auto" for the generic path); by
    default it is read from the config. Extra keyword arguments go to `from_pretrained` (e.g.
    `revision`, `attn_implementation`, `device_map="auto"` to spread a model larger than one GPU, or
    `quantization_config=BitsAndBytesConfig(load_in_4bit=True)`; with either `device` is not applied:
    the weights are placed at load). The fingerprint's weight sketch is read from the checkpoint files,
    so a quantized load has the sketch of the unquantized weights and accepts their classifiers.
    `max_layer=k` builds the model with decoder layers 0..k only (no final norm, no LM head) and reads
    only their weights from the safetensors checkpoint (see `superneurons.models.truncate`).
    """
    from transformers import AutoConfig

    from superneurons.models.truncate import HUB_KWARGS

    name_or_path = str(name_or_path)
    hub = {k: v for k, v in from_pretrained_kwargs.items() if k in HUB_KWARGS}  # config and processor too
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a model config from {name_or_path!r} ({exc}); pass a hub id such as "
                         "llava-hf/llava-1.5-7b-hf or a folder written by save_pretrained") from exc
    model_type = adapter or config.model_type
    cls = get_adapter(model_type, strict=adapter is not None)
    if max_layer is not None and not cls.support.truncate:
        raise ModelError(f"{name_or_path!r}: {cls.support.refusal('truncated loading', cls.family)}; "
                         "load it without max_layer (--truncate)")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev, config)
    from superneurons.models.truncate import HUB_KWARGS

    hub = {k: v for k, v in from_pretrained_kwargs.items() if k in HUB_KWARGS}
    processor = None
    try:
        processor = cls.load_processor(config.model_type, name_or_path, **hub)
        if max_layer is not None:
            from superneurons.models.truncate import load_truncated_model, mark_truncated

            model, report = load_truncated_model(name_or_path, max_layer, torch_dtype, dev, config=config,
                                                 **from_pretrained_kwargs)
            vlm = cls(model, processor, name_or_path=name_or_path, hub_kwargs=hub)
            return mark_truncated(vlm, config, max_layer, report)
        model = cls.load_weights(name_or_path, torch_dtype, **from_pretrained_kwargs)
    except ImportError as exc:  # e.g. a processor transformers builds only with torchvision (PixtralProcessor)
        raise ModelError(f"cannot load {name_or_path!r} (model type {config.model_type!r}): a dependency is "
                         f"missing ({' '.join(str(exc).split())[:300]}); install it (e.g. torchvision with a torch "
                         "that matches yours), or override VLM.load_processor in an adapter in superneurons/models/"
                         ) from exc
    except (OSError, ValueError, KeyError) as exc:
        hook = "load_processor" if processor is None else "load_weights"
        raise ModelError(f"cannot load {name_or_path!r} (model type {config.model_type!r}) as a {cls.family} "
                         f"model ({type(exc).__name__}: {exc}); check the id/folder and that it holds weights, "
                         f"config and processor files, or, for a family the generic path cannot load, add an adapter in "
                         f"superneurons/models/ that overrides VLM.{hook}") from exc
    placed = any(from_pretrained_kwargs.get(k) is not None for k in ("device_map", "quantization_config"))
    if not placed:  # a device map or a quantizer already placed the weights
        model.to(dev)
    return cls(model, processor, name_or_path=name_or_path, hub_kwargs=hub)
