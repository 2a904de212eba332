"""Processors without torchvision: any family's processor, built image-only from its saved files.

Many VLM processors (Qwen-VL, LLaVA-OneVision, SmolVLM, InternVL, GLM-4V, ...) hold a video
processor, and transformers' video processors need torchvision, which this library does not
depend on (and which has no CPU build for every torch). Images are all the library feeds, so
`load_image_only(name_or_path)` builds the family's own processor class with:

- the image processor and tokenizer loaded as `AutoProcessor` would load them;
- the saved processor settings (`processor_config.json`: e.g. SmolVLM's `image_seq_len`,
  InternVL's `image_seq_length`) passed through the class's own `from_args_and_dict`, so nothing
  saved is lost (a wrapper with a `*args/**kwargs` `__init__` would silently drop them: transformers
  keeps only the settings named in `__init__`);
- a `VideoSettings` in place of the video processor: it holds the saved video settings (SmolVLM's
  chat template reads `video_processor.num_frames` / `fps`) and refuses to process videos
  (`image_only_class(cls)` is `cls` accepting it).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from transformers.video_processing_utils import VideoProcessorMixin

from superneurons.errors import ModelError
from superneurons.models.truncate import HUB_KWARGS

VIDEO_CONFIG_NAME = "video_preprocessor_config.json"
PROCESSOR_CONFIG_NAME = "processor_config.json"


class VideoSettings(VideoProcessorMixin):
    """Stands in for a video processor when torchvision is missing: keeps the saved settings as
    attributes (and saves them back under the original class name), refuses to process videos."""

    def __init__(self, **kwargs: Any) -> None:
        self._saved_type = kwargs.pop("video_processor_type", None)
        super().__init__(**kwargs)

    def preprocess(self, videos: Any, **kwargs: Any) -> Any:
        raise ModelError("this processor was loaded without torchvision (image-only): it cannot process videos; "
                         "install torchvision for video inputs")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("_saved_type", None)
        if self._saved_type:
            out["video_processor_type"] = self._saved_type
        return out


def needs_torchvision(processor_cls: type) -> bool:
    """Whether `processor_cls` holds a video processor (which transformers builds with torchvision)."""
    attributes = getattr(processor_cls, "get_attributes", None)  # a placeholder class when a backend is missing
    return callable(attributes) and any("video" in a for a in attributes())


@functools.cache
def image_only_class(processor_cls: type) -> type:
    """`processor_cls` accepting a `VideoSettings` as its video processor. Its `__init__` is the
    original, so `from_pretrained` / `from_args_and_dict` keep every saved setting; only the class
    check of the video argument changes (transformers cannot even look the expected class up
    without torchvision)."""

    def check_argument_for_proper_class(self: Any, argument_name: str, argument: Any) -> Any:
        if isinstance(argument, VideoSettings):
            return VideoSettings
        return processor_cls.check_argument_for_proper_class(self, argument_name, argument)

    return type(processor_cls.__name__, (processor_cls,), {
        "check_argument_for_proper_class": check_argument_for_proper_class, "__module__": __name__,
        "__doc__": f"{processor_cls.__name__} without torchvision (images only)."})


def processor_class(name_or_path: str, model_type: str, **kwargs: Any) -> type | None:
    """The processor class a checkpoint names (`processor_config.json`), else its model type's
    `AutoProcessor` class; None when neither is known."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = None
    saved = _read_json(name_or_path, PROCESSOR_CONFIG_NAME, kwargs)
    if saved is not None:
        name = saved.get("processor_class")
    name = name or PROCESSOR_MAPPING_NAMES.get(model_type)
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    return cls if isinstance(cls, type) else None


def _read_json(name_or_path: str, filename: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON file of a local folder or hub repo (from the HF cache when offline); None if absent."""
    sub = kwargs.get("subfolder") or ""
    local = Path(name_or_path) / sub / filename
    if Path(name_or_path).is_dir():
        return json.loads(local.read_text()) if local.is_file() else None
    from huggingface_hub import hf_hub_download

    hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}
    try:
        return json.loads(Path(hf_hub_download(name_or_path, filename, **hub)).read_text())
    except (OSError, ValueError):  # not in the repo / cache, offline, a bad id: the caller falls back
        return None


def load_image_only(processor_cls: type, name_or_path: str, **kwargs: Any) -> Any:
    """`processor_cls` loaded from `name_or_path` without torchvision (see the module docstring)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    processor_dict, init_kwargs = processor_cls.get_processor_dict(name_or_path, **kwargs)
    hub = {k: v for k, v in kwargs.items() if k in HUB_KWARGS}
    args: list[Any] = []
    for attr in processor_cls.get_attributes():
        if "video" in attr:  # nested in processor_config.json (transformers 5) or a file of its own (4.x)
            saved = processor_dict.get(attr)
            args.append(VideoSettings(**(saved if isinstance(saved, dict) else
                                         _read_json(name_or_path, VIDEO_CONFIG_NAME, kwargs) or {})))
        elif "tokenizer" in attr:
            args.append(AutoTokenizer.from_pretrained(name_or_path, **hub))
        elif attr == "image_processor":
            args.append(AutoImageProcessor.from_pretrained(name_or_path, **hub))
        else:
            raise ModelError(f"{name_or_path}: {processor_cls.__name__} needs a {attr}, which the image-only "
                             "loader does not build; install torchvision or override VLM.load_processor")
    return image_only_class(processor_cls).from_args_and_dict(args, processor_dict, **init_kwargs)
