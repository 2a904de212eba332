"""Family adapters by `config.model_type`: `register_adapter` (a class decorator) and `get_adapter`.

A model type without a dedicated adapter loads through the `VLM` base class itself (the generic
path: `AutoModelForImageTextToText` + `AutoProcessor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from superneurons.errors import ModelError
from superneurons.models.base import VLM

_ADAPTERS: dict[str, type[VLM]] = {"auto": VLM}  # "auto": the generic path

_TORCHVISION = ("transformers' PixtralProcessor imports image_processing_pixtral, which imports torchvision at "
                "module level, so not even an image-only processor can be built")
#: the families `tests/conformance/` checks, with what stops one from running without torchvision ("" = runs)
CHECKED_FAMILIES: dict[str, str] = {
    "llava": "", "llava_next": "", "llava_onevision": "", "qwen2_vl": "", "qwen2_5_vl": "", "qwen3_vl": "",
    "idefics2": "", "idefics3": "", "smolvlm": "", "paligemma": "", "gemma3": "", "mllama": "", "internvl": "",
    "aya_vision": "", "glm4v": "", "mistral3": _TORCHVISION, "fuyu": "",
}


def register_adapter(*model_types: str) -> Callable[[type[VLM]], type[VLM]]:
    """Class decorator: use this adapter for configs whose `model_type` is one of `model_types`."""

    def deco(cls: type[VLM]) -> type[VLM]:
        for mt in model_types:
            _ADAPTERS[mt] = cls
        return cls

    return deco


def adapter_names() -> list[str]:
    """The model types with a dedicated adapter, and "auto" (the generic path every other type takes)."""
    return sorted(_ADAPTERS)


def get_adapter(model_type: str, strict: bool = False) -> type[VLM]:
    """The adapter class for a `config.model_type`; unknown types fall back to the generic `VLM`.

    With `strict=True` an unknown type raises a ModelError listing the known ones.
    """
    if model_type in _ADAPTERS:
        return _ADAPTERS[model_type]
    if strict:
        raise ModelError(f"no adapter for model_type {model_type!r}; known: {', '.join(adapter_names())} "
                         "(other image-text-to-text models load through the generic 'auto' adapter)")
    return VLM


def family_table() -> list[dict[str, Any]]:
    """One row per checked family (then any other registered model type): `model_type`, `adapter`
    (class name; `VLM` is the generic path), `family`, what is exact (`Support.features()`), `why`
    (why a feature is off), `blocked` (why it cannot run without torchvision; "" if it runs)."""
    rows = []
    for mt in [*CHECKED_FAMILIES, *sorted(set(_ADAPTERS) - set(CHECKED_FAMILIES) - {"auto"})]:
        cls = get_adapter(mt)
        rows.append({"model_type": mt, "adapter": cls.__name__, "family": cls.family, **cls.support.features(),
                     "why": cls.support.why, "blocked": CHECKED_FAMILIES.get(mt, "")})
    return rows


def family_cells() -> tuple[list[str], list[list[str]]]:
    """`family_table()` as text: (header, one row of cells per family); a blocked family's features
    read "not checked"."""
    rows = family_table()
    features = [k for k in rows[0] if isinstance(rows[0][k], bool)]
    head = ["model type", "adapter", *(f.replace("_", " ") for f in features), "notes"]
    out = []
    for r in rows:
        adapter = "generic VLM" if r["adapter"] == VLM.__name__ else r["adapter"]
        marks = ["not checked" if r["blocked"] else "yes" if r[f] else "no" for f in features]
        notes = f"needs torchvision: {r['blocked']}" if r["blocked"] else r["why"]
        out.append([r["model_type"], adapter, *marks, notes])
    return head, out


def family_markdown() -> str:
    """`family_table()` as the Markdown table the README shows (`superneurons models --markdown`)."""
    head, rows = family_cells()
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([f"`{r[0]}`", *r[1:]]) + " |" for r in rows]
    return "\n".join(lines)
