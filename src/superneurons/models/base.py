"""The `VLM` wrapper every pipeline step codes against, with the hooks a model family overrides.

A `VLM` holds a Hugging Face vision-language model, its processor and tokenizer. Everything the
pipeline needs to know about a model family is a method or attribute here, so no module outside
`superneurons.models` touches a family's internals:

- what is exact for the family: `support` (a `Support`, checked by `tests/conformance/`);
- prompts: `messages`, `build_prompt`, `prompt_template` (the chat template with `{question}`),
  `plain_prompt` (checkpoints without a chat template);
- inputs: `prepare(samples)` / `encode(texts, images)` (left padded, every input the forward takes,
  never `labels`), `processor_images` / `nested_images`, `extend_tokens` (prompt + generated tokens);
- structure: `decoder_layers`, `language_model`, `final_norm`, `lm_head`, `attention_output(i)`;
- tokens: `yes_no_token_ids`, `yes_no_margin`, `media_token_ids`, `image_placeholder_id`,
  `count_image_tokens`;
- resuming a stopped forward: `layer_replay()` (what the language model adds between layers,
  e.g. Qwen3-VL's DeepStack features) and `layer_kwarg_batch_dim` (how a layer argument is
  sliced by batch row);
- prefix reuse: `multimodal_rope` / `rope_positions(enc)` (Qwen's 3-D positions of a prompt);
- the fingerprint that stores and classifiers are checked against.

The base class is also the generic adapter: `AutoModelForImageTextToText` + `AutoProcessor`,
decoder layers at `model.model.language_model.layers` or `model.get_decoder().layers`, the processor
built image-only when torchvision is missing (`processors.py`). Family files (`llava.py`,
`qwen_vl.py`, `gemma.py`, ...) subclass it and register with `registry.register_adapter`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from superneurons.errors import ModelError
from superneurons.models.fingerprint import config_fingerprint, weight_sketch
from superneurons.models.support import Support

if TYPE_CHECKING:
    import torch
    from transformers import BatchEncoding, PreTrainedModel

    from superneurons.data.samples import Sample

QUESTION_FIELD = "{question}"
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")
SENTENCEPIECE_SPACE = "\u2581"
MEDIA_TOKEN_KEYS = ("image_token_index", "image_token_id", "video_token_id", "vision_start_token_id",
                    "vision_end_token_id")
IMAGE_TOKEN_KEYS = ("image_token_id", "image_token_index")
#: processor outputs that are training targets, never forward inputs (PaliGemma returns `labels`)
TRAINING_KEYS = frozenset({"labels"})


class LayerReplay:
    """What a language model adds to the residual stream between decoder layers, beyond the layers
    themselves; replayed when a stopped forward is resumed. The base adds nothing.

    A family whose language model does more (Qwen3-VL's DeepStack) returns a subclass from
    `VLM.layer_replay()` that records its inputs while the forward runs (a context manager) and
    re-applies them in `apply(h, layer_idx)`.
    """

    def __enter__(self) -> LayerReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def rows(self, idx: torch.Tensor) -> LayerReplay:
        """The replay of batch rows `idx` (ascending) only."""
        return self

    def apply(self, h: torch.Tensor, layer_idx: int) -> torch.Tensor:
        """The hidden state the next layer reads after decoder layer `layer_idx` produced `h`."""
        return h


class VLM:
    """A loaded VLM plus what the pipeline needs to know about its family.

    Attributes: `model` (eval mode), `processor`, `tokenizer` (left padding), `family`,
    `decoder_layers` (the language model's `nn.ModuleList`), `num_layers`, `hidden_size`,
    `device`, `dtype`, `fingerprint`, `prompt_template` (the full prompt string with `{question}`).
    """

    family: ClassVar[str] = "auto"
    #: what is exact for this family (see `Support`); the conformance suite checks every claim
    support: ClassVar[Support] = Support()
    #: positions are computed from the whole prompt (multimodal RoPE): a suffix run after a cached
    #: prefix needs `rope_positions`
    multimodal_rope: ClassVar[bool] = False
    #: the processor wants one image list per prompt (`[[im] for im in images]`: Gemma3, SmolVLM,
    #: Mllama) rather than one flat list
    nested_images: ClassVar[bool] = False
    #: the prompt, with `{question}`, of checkpoints that ship without a chat template (base
    #: checkpoints): the processor's own convention, e.g. PaliGemma's `<image>answer en {question}`
    plain_prompt: ClassVar[str | None] = None
    #: `token_type_ids` of a generated token (Gemma3: 0, not an image; PaliGemma: 1, the suffix)
    generated_token_type: ClassVar[int] = 0

    @classmethod
    def load_processor(cls, model_type: str, name_or_path: str, **kwargs: Any) -> Any:
        """The processor (image processor + tokenizer + chat template) saved with the model; built
        image-only (`superneurons.models.processors`) when it holds a video processor and torchvision
        is missing."""
        from transformers import AutoProcessor
        from transformers.utils import is_torchvision_available

        if not is_torchvision_available():
            from superneurons.models.processors import load_image_only, needs_torchvision, processor_class

            proc_cls = processor_class(name_or_path, model_type, **kwargs)
            if proc_cls is not None and needs_torchvision(proc_cls):
                return load_image_only(proc_cls, name_or_path, **kwargs)
        return AutoProcessor.from_pretrained(name_or_path, **kwargs)

    @classmethod
    def load_weights(cls, name_or_path: str, dtype: torch.dtype, **kwargs: Any) -> PreTrainedModel:
        """`from_pretrained` through the image-text-to-text auto class (LLaVA, Qwen-VL, ...)."""
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=dtype, **kwargs)

    def __init__(self, model: PreTrainedModel, processor: Any, name_or_path: str = "",
                 hub_kwargs: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.hub_kwargs = dict(hub_kwargs or {})  # revision, cache_dir, ...: where the checkpoint files are
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

    @property
    def revision(self) -> str | None:
        """The Hub commit the checkpoint was read from (`config._commit_hash`); None for a local folder."""
        return getattr(self.model.config, "_commit_hash", None)

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

    @property
    def final_norm(self) -> torch.nn.Module:
        """The norm after the last decoder layer (before the LM head)."""
        return self.language_model.norm

    @property
    def lm_head(self) -> torch.nn.Module:
        """The output projection to the vocabulary."""
        return self.model.get_output_embeddings()

    def attention_output(self, layer_idx: int) -> torch.nn.Module:
        """Decoder layer `layer_idx`'s attention output projection (its input: the heads, unmixed)."""
        proj = getattr(getattr(self.decoder_layers[layer_idx], "self_attn", None), "o_proj", None)
        if proj is None:
            raise ModelError(f"decoder layer {layer_idx} of {type(self.model).__name__} has no self_attn.o_proj; "
                             "override VLM.attention_output in this family's adapter (superneurons/models/)")
        return proj

    def _find_decoder_layers(self) -> torch.nn.ModuleList:
        layers = getattr(self.language_model, "layers", None)
        if layers is None:
            raise ModelError(f"{self.name_or_path}: cannot find the decoder layers of {type(self.model).__name__} "
                             f"(model type {self.model.config.model_type!r}; looked for language_model.layers / "
                             "get_decoder().layers); add an adapter for this family in superneurons/models/ that "
                             "overrides VLM.language_model or VLM._find_decoder_layers")
        return layers

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def weight_sketch(self) -> str | None:
        """`weight_sketch` of the input embeddings and the first decoder layer's matrices (both kept
        by truncated loads, so a truncated model has the full checkpoint's sketch), read from the
        checkpoint files when they are safetensors (so a quantized load, whose layer matrices are
        packed integers, sketches like the unquantized weights), else from memory."""
        from superneurons.models.truncate import checkpoint_sketch

        names = {id(p): n for n, p in self.model.named_parameters()}
        embed = self.model.get_input_embeddings().weight
        layer0 = [p for _, p in sorted(self.decoder_layers[0].named_parameters()) if p.dim() >= 2]
        params = [embed, *layer0]
        if self.name_or_path and all(id(p) in names for p in params):
            sketch = checkpoint_sketch(self.name_or_path, self.model, [names[id(p)] for p in params],
                                       **self.hub_kwargs)
            if sketch is not None:
                return sketch
        return weight_sketch(params)

    # ---- tokens ----------------------------------------------------------------------------
    def media_token_ids(self) -> list[int]:
        """Ids of the image / video placeholder tokens: a generated one would be read as an image slot
        by the next forward over prompt + answer, so generation must never emit them."""
        cfg = self.model.config
        ids = {getattr(cfg, k, None) for k in MEDIA_TOKEN_KEYS}
        return sorted(i for i in ids if isinstance(i, int) and i >= 0)

    def image_placeholder(self) -> str | None:
        """The image placeholder as it appears in prompts (e.g. `<image>`), if the processor says."""
        tok = getattr(self.processor, "image_token", None)
        return tok if isinstance(tok, str) and tok else None

    def image_placeholder_id(self) -> int | None:
        """The id of the image placeholder token, from the config or the processor; None if unknown."""
        for name in IMAGE_TOKEN_KEYS:
            value = getattr(self.model.config, name, None)
            if isinstance(value, int):
                return value
        tok = self.image_placeholder()
        return self.tokenizer.convert_tokens_to_ids(tok) if tok else None

    def count_image_tokens(self, input_ids: torch.Tensor) -> int:
        """Image placeholder tokens in the first row of `input_ids` (0 if the id is unknown)."""
        tok = self.image_placeholder_id()
        return 0 if tok is None else int((input_ids[0] == tok).sum())

    def yes_no_token_ids(self) -> tuple[list[int], list[int]]:
        """Token ids that start a "yes" / "no" answer (several casings, with and without a space).

        Computed once and kept: loops that prepare the next batch in a worker thread (which uses the
        tokenizer) read them without touching the tokenizer from a second thread."""
        cached = self.__dict__.get("_yes_no_ids")
        if cached is not None:
            return cached
        yes: list[int] = []
        no: list[int] = []
        unk = self.tokenizer.unk_token_id
        for words, out in ((YES_WORDS, yes), (NO_WORDS, no)):
            for w in words:
                for variant in (w, " " + w):
                    ids = self.tokenizer.encode(variant, add_special_tokens=False)
                    # a SentencePiece tokenizer may start with a bare "▁" (the prefix space): skip it
                    ids = [i for i in ids if self.tokenizer.decode([i]).replace(SENTENCEPIECE_SPACE, "").strip()]
                    if ids and ids[0] != unk and ids[0] not in out:
                        out.append(ids[0])
        if not yes or not no or set(yes) & set(no):
            raise ModelError(f"{self.name_or_path}: cannot find distinct yes/no tokens in the tokenizer")
        self._yes_no_ids = (yes, no)
        return yes, no

    def yes_no_margin(self, logits: torch.Tensor) -> torch.Tensor:
        """float32 [B] of first-answer-token `logits` [B, V]: logsumexp over the yes-token variants minus
        logsumexp over the no-token variants (their pooled unnormalised probabilities; > 0 leans yes)."""
        import torch

        yes, no = self.yes_no_token_ids()
        logits = logits.float()
        return torch.logsumexp(logits[:, yes], dim=1) - torch.logsumexp(logits[:, no], dim=1)

    # ---- prompts ---------------------------------------------------------------------------
    def messages(self, question: str) -> list[dict[str, Any]]:
        """The chat: one user turn with an image and the dataset's question (paper Tab. 1 prompts)."""
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]

    def chat_template_owner(self) -> Any:
        """The processor or tokenizer that holds the chat template; None if neither does."""
        owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        return owner if getattr(owner, "chat_template", None) else None

    def build_prompt(self, question: str) -> str:
        """The prompt string: the chat template applied with the generation prompt appended, or, for a
        checkpoint without one, the family's `plain_prompt` (its processor's own convention)."""
        owner = self.chat_template_owner()
        if owner is not None:
            return owner.apply_chat_template(self.messages(question), add_generation_prompt=True, tokenize=False)
        if self.plain_prompt is not None:
            return self.plain_prompt.replace(QUESTION_FIELD, question)
        raise ModelError(f"{self.name_or_path}: the processor has no chat template and the "
                         f"{self.model.config.model_type!r} family declares no prompt for checkpoints without one; "
                         "save a chat template with the processor (chat_template.jinja), or set `plain_prompt` "
                         "(or override `build_prompt`) in this family's adapter in superneurons/models/")

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

        enc = self.processor(images=self.processor_images(images, texts), text=list(texts), return_tensors="pt",
                             padding=True, **self.processor_kwargs())
        keep = self.forward_keys() - TRAINING_KEYS
        for k in [k for k in enc if k not in keep]:
            del enc[k]
        for k, v in list(enc.items()):
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.dtype)
                enc[k] = v
        return enc

    def processor_images(self, images: Sequence[Any], texts: Sequence[str]) -> list[Any]:
        """The images (in prompt order) as the processor takes them: one flat list, or with
        `nested_images` one list per prompt (split by the image placeholders each prompt holds)."""
        if not self.nested_images:
            return list(images)
        marker = self.image_placeholder()
        counts = [t.count(marker) for t in texts] if marker else [1] * len(texts)
        if sum(counts) != len(images):
            counts = [1] * len(texts)  # let the processor name the mismatch
        out, i = [], 0
        for n in counts:
            out.append(list(images[i:i + n]))
            i += n
        return out

    def forward_keys(self) -> set[str]:
        """Names of the model's `forward` parameters: the processor outputs `encode` keeps
        (`token_type_ids`, `pixel_attention_mask`, `image_sizes`, `aspect_ratio_ids`, ... where the
        forward takes them; training targets such as `labels` never)."""
        return set(inspect.signature(self.model.forward).parameters)

    def extend_tokens(self, inputs: dict[str, Any], new: torch.Tensor, new_mask: torch.Tensor) -> dict[str, Any]:
        """`inputs` of a prompt batch with generated tokens `new` [B, n] appended (mask `new_mask`): every
        per-token input grows too, by the value generation gives an answer token
        (`generated_token_type`; `mm_token_type_ids`: 0, text)."""
        import torch

        ids = inputs["input_ids"]
        out = dict(inputs)
        for k, v in inputs.items():
            if isinstance(v, torch.Tensor) and v.shape == ids.shape and k not in ("input_ids", "attention_mask"):
                fill = self.generated_token_type if k == "token_type_ids" else 0
                out[k] = torch.cat([v, torch.full_like(new, fill, dtype=v.dtype)], dim=1)
        out["input_ids"] = torch.cat([ids, new], dim=1)
        mask = inputs["attention_mask"]
        out["attention_mask"] = torch.cat([mask, new_mask.to(mask.dtype)], dim=1)
        return out

    # ---- resuming a stopped forward, prefix reuse --------------------------------------------
    def layer_replay(self) -> LayerReplay:
        """A fresh `LayerReplay` for one forward (the base: nothing to replay)."""
        return LayerReplay()

    def layer_kwarg_batch_dim(self, name: str, value: torch.Tensor) -> int:
        """The batch axis of a tensor the language model passes to its decoder layers: 0 (batch first),
        except 3-D multimodal RoPE positions (`position_ids` [3|4, B, S], `position_embeddings`
        [3|4, B, S, d], as Qwen-VL and GLM-4V pass them), whose batch axis is 1."""
        if (name == "position_ids" and value.dim() == 3) or (name == "position_embeddings" and value.dim() == 4):
            return 1
        return 0

    def rope_positions(self, enc: Any) -> torch.Tensor | None:
        """Position ids of a prepared batch when `multimodal_rope` (else None, positions are 0..S-1)."""
        return None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name_or_path!r}, layers={self.num_layers}, "
                f"hidden={self.hidden_size}, device={self.device}, dtype={self.dtype})")
