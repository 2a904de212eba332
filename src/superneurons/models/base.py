"""The `VLM` wrapper every pipeline step codes against, and the adapter registry.

A `VLM` holds a Hugging Face vision-language model, its processor and tokenizer, and knows the
three things the Super Neurons method needs from a model family: how to build the prompt (the
dataset question as the user turn with one image, chat template applied, generation prompt
appended), where the language model's decoder layers are, and a fingerprint that activation
stores and classifiers are checked against.

Family adapters (`llava.py`, `qwen_vl.py`, `auto.py`) subclass `VLM` and register themselves by
`config.model_type` with `register_adapter`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from superneurons.errors import ModelError

if TYPE_CHECKING:
    import torch
    from transformers import BatchEncoding, PreTrainedModel

    from superneurons.data.samples import Sample

QUESTION_FIELD = "{question}"
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")

_ADAPTERS: dict[str, type[VLM]] = {}


def register_adapter(*model_types: str) -> Callable[[type[VLM]], type[VLM]]:
    """Class decorator: use this adapter for configs whose `model_type` is one of `model_types`."""

    def deco(cls: type[VLM]) -> type[VLM]:
        for mt in model_types:
            _ADAPTERS[mt] = cls
        return cls

    return deco


def adapter_names() -> list[str]:
    """The model types with a dedicated adapter (others go through the generic `auto` adapter)."""
    return sorted(_ADAPTERS)


def get_adapter(model_type: str, strict: bool = False) -> type[VLM]:
    """The adapter class for a `config.model_type`; unknown types fall back to the generic one.

    With `strict=True` an unknown type raises a ModelError listing the known ones.
    """
    if model_type in _ADAPTERS:
        return _ADAPTERS[model_type]
    if strict:
        raise ModelError(f"no adapter for model_type {model_type!r}; known: {', '.join(adapter_names())} "
                         "(other image-text-to-text models load through the generic 'auto' adapter)")
    from superneurons.models.auto import AutoVLM

    return AutoVLM


_VOLATILE_CONFIG_KEYS = frozenset({
    "transformers_version", "_name_or_path", "name_or_path", "dtype", "torch_dtype", "_commit_hash",
    "_attn_implementation", "_attn_implementation_autoset", "attn_implementation", "use_cache",
    "output_hidden_states", "output_attentions", "return_dict"})


def _stable(obj: Any) -> Any:
    """The config dict without run-time fields (dtype, attention kernel, paths), at every depth."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in _VOLATILE_CONFIG_KEYS}
    if isinstance(obj, list | tuple):
        return [_stable(v) for v in obj]
    return obj


def config_fingerprint(config: Any, num_layers: int, hidden_size: int) -> dict[str, Any]:
    """architecture, sha256 of the config JSON (sorted keys, run-time fields dropped), L, D.

    The same checkpoint loaded in another dtype or on another device has the same fingerprint.
    `VLM` adds `weights` (a `weight_sketch`), compared with `same_weights`.
    """
    blob = json.dumps(_stable(config.to_dict()), sort_keys=True, default=str).encode()
    archs = getattr(config, "architectures", None) or [type(config).__name__.replace("Config", "")]
    return {"architecture": archs[0], "config_hash": hashlib.sha256(blob).hexdigest(),
            "num_layers": int(num_layers), "hidden_size": int(hidden_size)}


MEDIA_TOKEN_KEYS = ("image_token_index", "image_token_id", "video_token_id", "vision_start_token_id",
                    "vision_end_token_id")
SKETCH_BITS = 256
SKETCH_TOLERANCE = 0.05  # fraction of differing bits still read as the same weights


def weight_sketch(tensors: Sequence[torch.Tensor], bits: int = SKETCH_BITS) -> str | None:
    """Signs of `bits` weights spread evenly over `tensors`, as hex; None if a tensor is not in memory.

    Why signs: casting a checkpoint to fp16 / bf16 or moving it to another device keeps them (up to
    fp16 underflow of values below 6e-8), while another training run flips about half of them. So the
    sketch tells a retrained checkpoint with the same config apart at the cost of reading `bits` values.
    """
    import torch

    tensors = [t for t in tensors if t.is_floating_point() and t.numel() > 0]
    if not tensors or any(t.device.type == "meta" for t in tensors):
        return None
    per = max(1, bits // len(tensors))
    with torch.no_grad():
        signs = [(t.detach().reshape(-1)[torch.linspace(0, t.numel() - 1, per, device=t.device).long()] > 0).cpu()
                 for t in tensors]
    value = int("".join("1" if b else "0" for b in torch.cat(signs).tolist()), 2)
    return f"{value:0{(per * len(tensors) + 3) // 4}x}"


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two fingerprints' weight sketches agree (True when either has none, as older artifacts)."""
    sa, sb = a.get("weights"), b.get("weights")
    if not sa or not sb:
        return True
    if len(sa) != len(sb):
        return False
    return bin(int(sa, 16) ^ int(sb, 16)).count("1") <= SKETCH_TOLERANCE * len(sa) * 4


def same_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two fingerprints name the same model: every field equal, the weight sketch by `same_weights`."""
    def rest(fp: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fp.items() if k != "weights"}

    return rest(a) == rest(b) and same_weights(a, b)


class VLM:
    """A loaded VLM plus what the pipeline needs to know about its family.

    Attributes: `model` (eval mode), `processor`, `tokenizer` (left padding), `family`,
    `decoder_layers` (the language model's `nn.ModuleList`), `num_layers`, `hidden_size`,
    `device`, `dtype`, `fingerprint`, `prompt_template` (the full prompt string with `{question}`).
    """

    family: ClassVar[str] = "auto"

    @classmethod
    def load_processor(cls, model_type: str, name_or_path: str, **kwargs: Any) -> Any:
        """The processor (image processor + tokenizer + chat template) saved with the model."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(name_or_path, **kwargs)

    @classmethod
    def load_weights(cls, name_or_path: str, dtype: torch.dtype, **kwargs: Any) -> PreTrainedModel:
        """`from_pretrained` through the image-text-to-text auto class (LLaVA, Qwen-VL, ...)."""
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=dtype, **kwargs)

    def __init__(self, model: PreTrainedModel, processor: Any, name_or_path: str = "") -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.name_or_path = name_or_path
        self.decoder_layers = self._find_decoder_layers()
        self.num_layers = len(self.decoder_layers)
        self.hidden_size = int(self.text_config.hidden_size)
        self.fingerprint = config_fingerprint(model.config, self.num_layers, self.hidden_size)
        self.fingerprint["weights"] = self.weight_sketch()
        self.prompt_template = self.build_prompt(QUESTION_FIELD)
        # a template may repeat the question (the demo model reads it before and after the image)
        if QUESTION_FIELD not in self.prompt_template:
            raise ModelError(f"{name_or_path}: the chat template does not keep the question verbatim "
                             f"({self.prompt_template!r}); use a model whose template inserts the user text")

    # ---- structure -------------------------------------------------------------------------
    @property
    def text_config(self) -> Any:
        cfg = self.model.config
        return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg

    @property
    def language_model(self) -> torch.nn.Module:
        """The text decoder (embeddings, layers, final norm)."""
        inner = getattr(self.model, "model", self.model)
        lm = getattr(inner, "language_model", None)
        if lm is not None:
            return lm
        return self.model.get_decoder()

    def media_token_ids(self) -> list[int]:
        """Ids of the image / video placeholder tokens: a generated one would be read as an image slot
        by the next forward over prompt + answer, so generation must never emit them."""
        cfg = self.model.config
        ids = {getattr(cfg, k, None) for k in MEDIA_TOKEN_KEYS}
        return sorted(i for i in ids if isinstance(i, int) and i >= 0)

    def weight_sketch(self) -> str | None:
        """`weight_sketch` of the input embeddings and the first decoder layer's matrices (both kept
        by truncated loads, so a truncated model has the full checkpoint's sketch)."""
        layer0 = [p for _, p in sorted(self.decoder_layers[0].named_parameters()) if p.dim() >= 2]
        return weight_sketch([self.model.get_input_embeddings().weight, *layer0])

    def _find_decoder_layers(self) -> torch.nn.ModuleList:
        layers = getattr(self.language_model, "layers", None)
        if layers is None:
            raise ModelError(f"{self.name_or_path}: cannot find the decoder layers of "
                             f"{type(self.model).__name__} (looked for language_model.layers / "
                             "get_decoder().layers); add an adapter for this family in superneurons/models/")
        return layers

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    # ---- prompts ---------------------------------------------------------------------------
    def messages(self, question: str) -> list[dict[str, Any]]:
        """The chat: one user turn with an image and the dataset's question (paper Tab. 1 prompts)."""
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]

    def build_prompt(self, question: str) -> str:
        """The prompt string: chat template applied, generation prompt appended."""
        owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        if not getattr(owner, "chat_template", None):
            raise ModelError(f"{self.name_or_path}: the processor has no chat template; save one with the "
                             "processor (chat_template.jinja) or use an instruction-tuned checkpoint")
        return owner.apply_chat_template(self.messages(question), add_generation_prompt=True, tokenize=False)

    def processor_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for the processor call (family-specific)."""
        return {}

    def prepare(self, samples: Sequence[Sample]) -> BatchEncoding:
        """Left-padded model inputs for a batch of samples, on the model's device."""
        if not samples:
            raise ModelError("prepare() got no samples")
        return self.encode([self.build_prompt(s.question) for s in samples], [s.load_image() for s in samples])

    def encode(self, texts: Sequence[str], images: Sequence[Any]) -> BatchEncoding:
        """Processor inputs for ready-made prompts and their images (in prompt order), left padded,
        with only the keys the model's forward takes, on the model's device and dtype."""
        import torch

        enc = self.processor(images=list(images), text=list(texts), return_tensors="pt", padding=True,
                             **self.processor_kwargs())
        enc.pop("token_type_ids", None)
        if "mm_token_type_ids" not in self.forward_keys():
            enc.pop("mm_token_type_ids", None)
        for k, v in list(enc.items()):
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.dtype)
                enc[k] = v
        return enc

    def forward_keys(self) -> set[str]:
        """Names of the model's `forward` parameters (the processor may return extra keys)."""
        import inspect

        return set(inspect.signature(self.model.forward).parameters)

    def yes_no_token_ids(self) -> tuple[list[int], list[int]]:
        """Token ids that start a "yes" / "no" answer (several casings, with and without a space)."""
        yes: list[int] = []
        no: list[int] = []
        unk = self.tokenizer.unk_token_id
        for words, out in ((YES_WORDS, yes), (NO_WORDS, no)):
            for w in words:
                for variant in (w, " " + w):
                    ids = self.tokenizer.encode(variant, add_special_tokens=False)
                    if ids and ids[0] != unk and ids[0] not in out:
                        out.append(ids[0])
        if not yes or not no or set(yes) & set(no):
            raise ModelError(f"{self.name_or_path}: cannot find distinct yes/no tokens in the tokenizer")
        return yes, no

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name_or_path!r}, layers={self.num_layers}, "
                f"hidden={self.hidden_size}, device={self.device}, dtype={self.dtype})")
