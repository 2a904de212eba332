"""Tiny (or mid-size) random VLMs built from configs, saved with `save_pretrained`: no hub, no network.

Tests load these folders back through `load_model`, so they exercise the real loading path;
benchmarks use the same builders with config overrides (e.g. LLaVA-1.5-7B's sizes).

Each builder writes a complete model folder: weights, config, a local word-level tokenizer
(built with `tokenizers`, wrapped in `PreTrainedTokenizerFast`), an image processor and a
chat template saved with the processor and tokenizer, so `apply_chat_template` works offline.

    >>> make_tiny_llava("/tmp/tiny-llava")                                  # doctest: +SKIP
    >>> make_tiny_qwen_vl("/tmp/tiny-qwen3", version="qwen3_vl")            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from superneurons.models.loading import model_from_config

QwenVersion = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]

#: Chat template in the format of llava-hf/llava-1.5-*-hf ("USER: <image>\n{q} ASSISTANT:").
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: ChatML template of the Qwen-VL family (image placeholder inside vision start/end markers).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>", "<unk>"]

# A small English vocabulary: enough that different questions tokenize differently.
_WORDS_TEXT = (
    "yes no Yes No YES NO a an the is are was were be it this that there here of in on at to from with "
    "and or not what which who where when how why do does did can could would should will image picture "
    "photo question answer single word using Answer Is Are Does Do Can Which What USER ASSISTANT user "
    "assistant system left right top bottom front behind above below near far position object objects "
    "obstructing occluding in front viewer perspective color red green blue yellow black white gray brown "
    "purple cyan orange pink shape cube sphere cylinder circle square triangle star small large big tiny "
    "metal rubber shiny matte dog cat person car bus chair table bird horse sheep cow bottle cup bowl "
    "pizza banana apple phone book clock vase tv laptop bench truck boat plane train bicycle kite "
    "umbrella handbag tie bed toilet sink oven pepper one two three four five six seven eight nine ten "
    "more less than same number count many any some all only same different other visible present "
    "option choice correct true false it's you I he she they we his her their my your"
)
_WORDS = _WORDS_TEXT.split()
_PUNCT = list("?.,!:;'\"()[]{}-_/\\<>|=+*&%$#@") + [str(d) for d in range(10)]


def build_tokenizer(specials: list[str], pad: str, eos: str, bos: str | None = None,
                    unk: str = "<unk>", chat_template: str | None = None,
                    named: dict[str, str] | None = None, prefix_space: bool = False,
                    words: tuple[str, ...] = ()) -> Any:
    """A word-level `PreTrainedTokenizerFast` over a small fixed vocabulary (specials first: ids 0..).

    `named` gives special tokens a name the family's processor reads from the tokenizer (e.g.
    Gemma3's `{"boi_token": "<start_of_image>"}` -> `tokenizer.boi_token`, `tokenizer.boi_token_id`).
    `prefix_space` makes it behave like a SentencePiece tokenizer that prepends "▁": each text between
    special tokens starts with a "▁" token. `words` are ordinary vocabulary entries that are kept whole
    (Fuyu's `|SPEAKER|`, which its processor expects after a "▁" it drops).
    """
    import re

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in [*specials, *(["\u2581"] if prefix_space else []), *words, *_WORDS, *_PUNCT]:
        vocab.setdefault(tok, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if prefix_space or words:  # whole `words`, a lone "▁", then Whitespace()'s pieces
        pattern = "|".join([*map(re.escape, words), "\u2581", r"\w+", r"[^\w\s\u2581]"])
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                    pre_tokenizers.Split(Regex(pattern), behavior="isolated")])
    if prefix_space:
        tk.normalizer = normalizers.Prepend("\u2581")
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    if bos is not None:  # like Llama tokenizers: a BOS token before every sequence
        tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, vocab[bos])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token=unk, pad_token=pad, eos_token=eos,
                                  bos_token=bos, padding_side="left", chat_template=chat_template,
                                  **({"extra_special_tokens": dict(named)} if named else {}))
    tok.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in {unk, pad, eos, bos}]})
    return tok


def _deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _save(model: Any, processor: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def save_family(model: Any, processor: Any, path: str | Path) -> Path:
    """Save `model` and `processor` to `path` like a hub checkpoint; returns the folder."""
    return _save(model, processor, Path(path))


def seeded_model(config: Any, seed: int = 0, dtype: str = "float32") -> Any:
    """A random model of `config` (weights drawn after `torch.manual_seed(seed)`), in eval mode."""
    import torch

    torch.manual_seed(seed)
    return model_from_config(config).to(getattr(torch, dtype)).eval()


def with_video_processor(processor_cls: type, video_class: str, video: dict[str, Any] | None = None,
                         **kwargs: Any) -> Any:
    """`processor_cls(**kwargs)` with the family's video processor: the real one with torchvision, else
    `VideoSettings` holding the settings (saved like the real one's, as hub checkpoints have them)."""
    import transformers as tf
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return processor_cls(video_processor=getattr(tf, video_class)(**(video or {})), **kwargs)
    from superneurons.models.processors import VideoSettings, image_only_class

    return image_only_class(processor_cls)(video_processor=VideoSettings(video_processor_type=video_class,
                                                                         **(video or {})), **kwargs)


def _literal(text: str) -> str:
    return "{{ " + repr(text) + " }}" if text else ""


def chat_template(user: str, image: str, end_of_turn: str, assistant: str, bos: str = "") -> str:
    """A Jinja chat template: `bos`, then per user turn `user` + its contents in order (`image` for an
    image, the text as is) + `end_of_turn`, then `assistant` as the generation prompt."""
    return (
        _literal(bos) + "{% for message in messages %}{% if message['role'] == 'user' %}" + _literal(user)
        + "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + _literal(image)
        + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}" + _literal(end_of_turn)
        + "{% endif %}{% endfor %}{% if add_generation_prompt %}" + _literal(assistant) + "{% endif %}")


def make_tiny_llava(path: str | Path, text_layers: int = 4, hidden: int = 64, vision_hidden: int = 32,
                    image_size: int = 28, patch_size: int = 14, vision_layers: int = 2, heads: int = 4,
                    seed: int = 0, dtype: str = "float32", **overrides: Any) -> Path:
    """Build a random LLaVA (Llama text, CLIP vision) from a `LlavaConfig` and save it to `path`.

    `overrides` are merged into the `LlavaConfig` dict (nested dicts for `text_config` /
    `vision_config`), e.g. LLaVA-1.5-7B's sizes for a benchmark:
    `text_config={"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
    "num_key_value_heads": 32}`, `vision_config={"hidden_size": 1024, ...}`.
    The vocabulary grows to `text_config.vocab_size` if that is larger than the tokenizer's.
    """
    import torch
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaProcessor

    path = Path(path)
    tok = build_tokenizer(LLAVA_SPECIALS, pad="<pad>", eos="</s>", bos="<s>", chat_template=LLAVA_CHAT_TEMPLATE)
    image_id = tok.convert_tokens_to_ids("<image>")
    cfg: dict[str, Any] = {
        "text_config": {"model_type": "llama", "vocab_size": len(tok), "hidden_size": hidden,
                        "intermediate_size": 2 * hidden, "num_hidden_layers": text_layers,
                        "num_attention_heads": heads, "num_key_value_heads": heads,
                        "max_position_embeddings": 2048, "pad_token_id": tok.pad_token_id,
                        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": vision_hidden,
                          "intermediate_size": 2 * vision_hidden, "num_hidden_layers": vision_layers,
                          "num_attention_heads": max(1, vision_hidden // 16), "image_size": image_size,
                          "patch_size": patch_size, "projection_dim": vision_hidden},
        "image_token_id": image_id, "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
    }
    cfg = _deep_update(cfg, overrides)
    cfg["text_config"]["vocab_size"] = max(cfg["text_config"]["vocab_size"], len(tok))
    config = LlavaConfig(**cfg)
    torch.manual_seed(seed)
    model = model_from_config(config).to(getattr(torch, dtype)).eval()
    vc = config.vision_config
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": vc.image_size},
                                            crop_size={"height": vc.image_size, "width": vc.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=vc.patch_size,
                               vision_feature_select_strategy=config.vision_feature_select_strategy,
                               chat_template=LLAVA_CHAT_TEMPLATE, num_additional_image_tokens=1)
    return _save(model, processor, path)


def make_tiny_qwen_vl(path: str | Path, version: QwenVersion = "qwen2_vl", text_layers: int = 3,
                      hidden: int = 64, vision_hidden: int = 32, image_size: int = 28, patch_size: int = 14,
                      vision_layers: int = 2, heads: int = 4, seed: int = 0, dtype: str = "float32",
                      **overrides: Any) -> Path:
    """Build a random Qwen2-VL / Qwen2.5-VL / Qwen3-VL model and save it to `path`.

    Images are resized to about `image_size` px (pixel bounds set in the image processor), so the
    number of image tokens stays small (e.g. 28 px, patch 14, merge 2 -> 1 image token).
    `overrides` merge into the config dict (`text_config` / `vision_config` nested).
    """
    import torch
    import transformers as tf
    path = Path(path)
    tok = build_tokenizer(QWEN_SPECIALS, pad="<|endoftext|>", eos="<|im_end|>", chat_template=QWEN_CHAT_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    head_dim = hidden // heads
    # mrope sections (t, h, w) sum to head_dim // 2
    half = head_dim // 2
    sections = [half - 2 * (half // 4), half // 4, half // 4]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections}
    text = {"vocab_size": len(tok), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": text_layers, "num_attention_heads": heads, "num_key_value_heads": heads // 2,
            "max_position_embeddings": 2048, "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "rope_parameters": rope}
    merge = 2
    vision: dict[str, Any]
    if version == "qwen2_vl":
        proc_cls = tf.Qwen2VLProcessor
        config_cls = tf.Qwen2VLConfig
        vision = {"depth": vision_layers, "embed_dim": vision_hidden, "hidden_size": hidden,
                  "num_heads": max(1, vision_hidden // 16), "mlp_ratio": 2, "patch_size": patch_size,
                  "spatial_merge_size": merge, "temporal_patch_size": 2}
    elif version == "qwen2_5_vl":
        proc_cls = tf.Qwen2_5_VLProcessor
        config_cls = tf.Qwen2_5_VLConfig
        vision = {"depth": vision_layers, "hidden_size": vision_hidden, "out_hidden_size": hidden,
                  "intermediate_size": 2 * vision_hidden, "num_heads": max(1, vision_hidden // 16),
                  "patch_size": patch_size, "spatial_merge_size": merge, "temporal_patch_size": 2,
                  "window_size": 2 * patch_size * merge, "fullatt_block_indexes": [vision_layers - 1]}
    elif version == "qwen3_vl":
        proc_cls = tf.Qwen3VLProcessor
        config_cls = tf.Qwen3VLConfig
        text["head_dim"] = head_dim
        vision = {"depth": vision_layers, "hidden_size": vision_hidden, "out_hidden_size": hidden,
                  "intermediate_size": 2 * vision_hidden, "num_heads": max(1, vision_hidden // 16),
                  "patch_size": patch_size, "spatial_merge_size": merge, "temporal_patch_size": 2,
                  "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}
    else:
        raise ValueError(f"unknown Qwen-VL version {version!r}; use qwen2_vl, qwen2_5_vl or qwen3_vl")
    cfg: dict[str, Any] = {"text_config": text, "vision_config": vision,
                           "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
                           "vision_start_token_id": ids["<|vision_start|>"],
                           "vision_end_token_id": ids["<|vision_end|>"]}
    cfg = _deep_update(cfg, overrides)
    cfg["text_config"]["vocab_size"] = max(cfg["text_config"]["vocab_size"], len(tok))
    config = config_cls(**cfg)
    torch.manual_seed(seed)
    model = model_from_config(config).to(getattr(torch, dtype)).eval()
    pixels = image_size * image_size
    image_processor = tf.Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, patch_size=patch_size, merge_size=merge, temporal_patch_size=2,
        size={"shortest_edge": pixels, "longest_edge": pixels})
    video_cls = "Qwen3VLVideoProcessor" if version == "qwen3_vl" else "Qwen2VLVideoProcessor"
    processor = with_video_processor(proc_cls, video_cls, image_processor=image_processor, tokenizer=tok,
                                     chat_template=QWEN_CHAT_TEMPLATE)
    return _save(model, processor, path)
