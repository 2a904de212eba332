"""Tiny random models of every image-text-to-text family the library supports, saved with `save_pretrained`.

One small builder per family (`FAMILY_BUILDERS[model_type](path)`), each writing a complete folder
like a hub checkpoint: config, random weights, a local word-level tokenizer with the family's
special tokens (image placeholder, begin/end of image, turn markers), the family's image processor
(the PIL variants, which need no torchvision) and the family's chat template, except for PaliGemma
and Fuyu, whose base checkpoints ship without one. Sizes are tiny (text hidden 32, 3 layers; 28-56 px
images; a few image tokens), so a forward takes milliseconds on a CPU. The conformance suite
(`tests/conformance/`) builds each family once per session; benchmarks may use them too.

    >>> make_tiny_family("gemma3", "/tmp/tiny-gemma3")      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from superneurons.testing.factory import (
    LLAVA_CHAT_TEMPLATE,
    build_tokenizer,
    chat_template,
    make_tiny_llava,
    make_tiny_qwen_vl,
    save_family,
    seeded_model,
    with_video_processor,
)

HIDDEN = 32
LAYERS = 3
HEADS = 2
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}


def _text(tok: Any, **extra: Any) -> dict[str, Any]:
    """A tiny decoder config dict (Llama-like keys) with the tokenizer's vocabulary and special ids."""
    return {"vocab_size": len(tok), "hidden_size": HIDDEN, "intermediate_size": 2 * HIDDEN,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": HEADS,
            "head_dim": HIDDEN // HEADS, "max_position_embeddings": 512, "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, **extra}


def _ids(tok: Any, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def llava_next(path: Path) -> Path:
    """LLaVA-NeXT (1.6): CLIP + anyres tiles (one 28 px tile + the base image), Llama text."""
    import transformers as tf

    tok = build_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], pad="<pad>", eos="</s>", bos="<s>")
    grid = [[28, 28], [28, 56], [56, 28]]
    config = tf.LlavaNextConfig(
        text_config={"model_type": "llama", **_text(tok)},
        vision_config={"model_type": "clip_vision_model", **VISION, "image_size": 28, "patch_size": 14,
                       "projection_dim": 32},
        image_token_index=_ids(tok, "<image>")[0], image_grid_pinpoints=grid, vision_feature_layer=-1,
        tie_word_embeddings=False)
    ip = tf.LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                       image_grid_pinpoints=grid)
    proc = tf.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14, chat_template=LLAVA_CHAT_TEMPLATE,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return save_family(seeded_model(config), proc, path)


def llava_onevision(path: Path) -> Path:
    """LLaVA-OneVision: SigLIP + anyres, Qwen2 text, ChatML; its processor also has a video processor."""
    import transformers as tf

    tok = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>", "<unk>"],
                          pad="<|endoftext|>", eos="<|im_end|>")
    image, video = _ids(tok, "<image>", "<video>")
    grid = [[28, 28], [28, 56], [56, 28]]
    config = tf.LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_text(tok)},
        vision_config={"model_type": "siglip_vision_model", **VISION, "image_size": 28, "patch_size": 14},
        image_token_index=image, video_token_index=video, image_grid_pinpoints=grid,
        vision_aspect_ratio="anyres_max_1")
    ip = tf.LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_grid_pinpoints=grid)
    template = chat_template("<|im_start|>user\n", "<image>\n", "<|im_end|>\n", "<|im_start|>assistant\n")
    proc = with_video_processor(tf.LlavaOnevisionProcessor, "LlavaOnevisionVideoProcessor", image_processor=ip,
                                tokenizer=tok, num_image_tokens=4, vision_feature_select_strategy="full",
                                chat_template=template, vision_aspect_ratio="anyres_max_1")
    return save_family(seeded_model(config), proc, path)


def _idefics_tokenizer(extra: list[str], **named: str) -> Any:
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<fake_token_around_image>", "<image>", "<end_of_utterance>",
                *extra]
    return build_tokenizer(specials, pad="<pad>", eos="<end_of_utterance>", bos="<s>",
                           named={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                  "end_of_utterance_token": "<end_of_utterance>", **named})


def idefics2(path: Path) -> Path:
    """Idefics2: SigLIP-like vision + perceiver resampler (2 latents per image), Mistral text."""
    import transformers as tf

    tok = _idefics_tokenizer([], image_boundary_token="<fake_token_around_image>")
    config = tf.Idefics2Config(
        text_config={"model_type": "mistral", **_text(tok)},
        vision_config={**VISION, "image_size": 28, "patch_size": 14},
        perceiver_config={"hidden_size": HIDDEN, "resampler_n_latents": 2, "resampler_depth": 1,
                          "resampler_n_heads": 2, "resampler_head_dim": 8, "num_key_value_heads": 1},
        image_token_id=_ids(tok, "<image>")[0])
    ip = tf.Idefics2ImageProcessorPil(do_image_splitting=False, size={"shortest_edge": 28, "longest_edge": 28})
    template = chat_template("User:", "<image>", "<end_of_utterance>\n", "Assistant:")
    proc = tf.Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=2, chat_template=template)
    return save_family(seeded_model(config), proc, path)


def _idefics3_like(config_cls: type, image_processor_cls: type, tok: Any) -> tuple[Any, Any, str]:
    """(config, image processor, chat template) shared by Idefics3 and SmolVLM: 28 px, one image token."""
    config = config_cls(text_config={"model_type": "llama", **_text(tok)},
                        vision_config={**VISION, "image_size": 28, "patch_size": 14}, scale_factor=2,
                        image_token_id=_ids(tok, "<image>")[0])
    ip = image_processor_cls(do_image_splitting=False, size={"longest_edge": 28},
                             max_image_size={"longest_edge": 28})
    return config, ip, chat_template("<|im_start|>User:", "<image>", "<end_of_utterance>\n", "Assistant:")


def idefics3(path: Path) -> Path:
    """Idefics3: SigLIP-like vision, pixel shuffle (4 patches -> 1 image token), Llama text."""
    import transformers as tf

    tok = _idefics_tokenizer(["<global-img>"], global_image_token="<global-img>")
    config, ip, template = _idefics3_like(tf.Idefics3Config, tf.Idefics3ImageProcessorPil, tok)
    proc = tf.Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=1, chat_template=template)
    return save_family(seeded_model(config), proc, path)


def smolvlm(path: Path) -> Path:
    """SmolVLM: Idefics3's layout; its processor has a video processor and nests images per prompt."""
    import transformers as tf

    tok = _idefics_tokenizer(["<global-img>", "<video>"], global_image_token="<global-img>", video_token="<video>")
    config, ip, template = _idefics3_like(tf.SmolVLMConfig, tf.SmolVLMImageProcessorPil, tok)
    proc = with_video_processor(tf.SmolVLMProcessor, "SmolVLMVideoProcessor", {"num_frames": 8, "fps": 1},
                       image_processor=ip, tokenizer=tok, image_seq_len=1, chat_template=template)
    return save_family(seeded_model(config), proc, path)


def paligemma(path: Path) -> Path:
    """PaliGemma (a base checkpoint: no chat template): SigLIP, Gemma text, prefix-LM attention."""
    import transformers as tf

    tok = build_tokenizer(["<unk>", "<bos>", "<eos>", "<pad>", "<image>"], pad="<pad>", eos="<eos>", bos="<bos>",
                          named={"image_token": "<image>"})
    proc = tf.PaliGemmaProcessor(image_processor=tf.SiglipImageProcessorPil(size={"height": 28, "width": 28}),
                                 tokenizer=tok)
    proc.image_processor.image_seq_length = 4
    config = tf.PaliGemmaConfig(
        text_config={"model_type": "gemma", **_text(tok), "vocab_size": len(tok)},
        vision_config={"model_type": "siglip_vision_model", **VISION, "image_size": 28, "patch_size": 14,
                       "projection_dim": HIDDEN},
        image_token_index=_ids(tok, "<image>")[0], projection_dim=HIDDEN, hidden_size=HIDDEN, vocab_size=len(tok))
    return save_family(seeded_model(config), proc, path)


def gemma3(path: Path) -> Path:
    """Gemma3: SigLIP + pooled image tokens, Gemma3 text with sliding-window and global layers."""
    import transformers as tf

    names = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = build_tokenizer(["<unk>", "<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", *names.values()],
                          pad="<pad>", eos="<end_of_turn>", bos="<bos>", named=names)
    boi, eoi, image = _ids(tok, *names.values())
    config = tf.Gemma3Config(
        text_config={**_text(tok), "sliding_window": 8, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16},
        vision_config={"model_type": "siglip_vision_model", **VISION, "image_size": 28, "patch_size": 14},
        mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi, image_token_index=image)
    ip = tf.Gemma3ImageProcessorPil(size={"height": 28, "width": 28}, do_pan_and_scan=False)
    template = chat_template("<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n",
                             "<start_of_turn>model\n", bos="<bos>")
    proc = tf.Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=template)
    return save_family(seeded_model(config), proc, path)


def mllama(path: Path) -> Path:
    """Mllama (Llama 3.2 Vision): tiled vision encoder, cross-attention decoder layer 1 reads the image."""
    import transformers as tf

    tok = build_tokenizer(["<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", "<|image|>",
                           "<|start_header_id|>", "<|end_header_id|>"], pad="<|finetune_right_pad_id|>",
                          eos="<|eot_id|>", bos="<|begin_of_text|>", named={"image_token": "<|image|>"})
    config = tf.MllamaConfig(
        text_config={**_text(tok), "cross_attention_layers": [1]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_global_layers": 1,
                       "attention_heads": 2, "vision_output_dim": 64, "image_size": 28, "patch_size": 14,
                       "max_num_tiles": 1, "intermediate_layers_indices": [0], "supported_aspect_ratios": [[1, 1]]},
        image_token_index=_ids(tok, "<|image|>")[0])
    ip = tf.MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=1)
    template = chat_template("<|start_header_id|>user<|end_header_id|>\n\n", "<|image|>", "<|eot_id|>",
                             "<|start_header_id|>assistant<|end_header_id|>\n\n", bos="<|begin_of_text|>")
    proc = tf.MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=template)
    return save_family(seeded_model(config), proc, path)


def internvl(path: Path) -> Path:
    """InternVL: InternViT + pixel shuffle, Qwen2 text, ChatML with `<IMG_CONTEXT>` image tokens."""
    import transformers as tf

    names = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
    tok = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", *names.values(), "<unk>"],
                          pad="<|endoftext|>", eos="<|im_end|>", named=names)
    config = tf.InternVLConfig(
        text_config={"model_type": "qwen2", **_text(tok)},
        vision_config={**VISION, "image_size": [28, 28], "patch_size": [14, 14]},
        image_token_id=_ids(tok, "<IMG_CONTEXT>")[0], image_seq_length=1, downsample_ratio=0.5)
    ip = tf.GotOcr2ImageProcessorPil(size={"height": 28, "width": 28}, crop_to_patches=False)
    template = chat_template("<|im_start|>user\n", "<IMG_CONTEXT>\n", "<|im_end|>\n", "<|im_start|>assistant\n")
    proc = with_video_processor(tf.InternVLProcessor, "InternVLVideoProcessor", image_processor=ip, tokenizer=tok,
                       image_seq_length=1, chat_template=template)
    return save_family(seeded_model(config), proc, path)


def aya_vision(path: Path) -> Path:
    """Aya Vision: SigLIP + pixel shuffle, Cohere2 text (sliding-window and global layers)."""
    import transformers as tf

    img = ["<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL"]
    tok = build_tokenizer(["<unk>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<PAD>", "<image>",
                           "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", *img],
                          pad="<PAD>", eos="<|END_OF_TURN_TOKEN|>", bos="<BOS_TOKEN>")
    config = tf.AyaVisionConfig(
        text_config={"model_type": "cohere2", **_text(tok), "sliding_window": 8, "sliding_window_pattern": 2},
        vision_config={"model_type": "siglip_vision_model", **VISION, "image_size": 28, "patch_size": 14},
        downsample_factor=2, image_token_index=_ids(tok, "<|IMG_PATCH|>")[0])
    ip = tf.GotOcr2ImageProcessorPil(size={"height": 28, "width": 28}, crop_to_patches=False)
    template = chat_template("<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "<image>", "<|END_OF_TURN_TOKEN|>",
                             "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", bos="<BOS_TOKEN>")
    proc = tf.AyaVisionProcessor(image_processor=ip, tokenizer=tok, patch_size=14, img_size=28, downsample_factor=2,
                                 chat_template=template)
    return save_family(seeded_model(config), proc, path)


def glm4v(path: Path) -> Path:
    """GLM-4V: Qwen-like vision with 2x2 merge, GLM text with 3-D multimodal RoPE."""
    import transformers as tf

    names = ["<|image|>", "<|begin_of_image|>", "<|end_of_image|>", "<|video|>", "<|begin_of_video|>",
             "<|end_of_video|>"]
    tok = build_tokenizer(["<|endoftext|>", "[gMASK]", "<sop>", "<|user|>", "<|assistant|>", *names, "<unk>"],
                          pad="<|endoftext|>", eos="<|user|>", named={"image_token": "<|image|>",
                                                                      "video_token": "<|video|>"})
    image, boi, eoi, video, bov, eov = _ids(tok, *names)
    quarter = HIDDEN // HEADS // 4  # mrope sections (t, h, w) cover the rotary half of each head's dims, halved
    config = tf.Glm4vConfig(
        text_config={**_text(tok), "num_key_value_heads": 1, "rope_parameters": {
            "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
            "mrope_section": [quarter // 2, quarter // 4, quarter // 4]}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "image_size": 28,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "out_hidden_size": HIDDEN},
        image_token_id=image, video_token_id=video, image_start_token_id=boi, image_end_token_id=eoi,
        video_start_token_id=bov, video_end_token_id=eov)
    pixels = 28 * 28
    ip = tf.Glm4vImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=14,
                                   merge_size=2, temporal_patch_size=2)
    template = chat_template("<|user|>\n", "<|begin_of_image|><|image|><|end_of_image|>", "", "<|assistant|>\n",
                             bos="[gMASK]<sop>")
    proc = with_video_processor(tf.Glm4vProcessor, "Glm4vVideoProcessor", image_processor=ip, tokenizer=tok,
                       chat_template=template)
    return save_family(seeded_model(config), proc, path)


def mistral3(path: Path) -> Path:
    """Mistral3 (Pixtral vision, 2x2 patch merge), Mistral text, `[IMG]` / `[IMG_BREAK]` / `[IMG_END]` tokens."""
    import transformers as tf

    tok = build_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]",
                           "[/INST]"], pad="<pad>", eos="</s>", bos="<s>")
    config = tf.Mistral3Config(
        text_config={"model_type": "mistral", **_text(tok)},
        vision_config={"model_type": "pixtral", **VISION, "image_size": 56, "patch_size": 14, "head_dim": 16},
        image_token_index=_ids(tok, "[IMG]")[0], spatial_merge_size=2)
    ip = tf.PixtralImageProcessorPil(size={"longest_edge": 56}, patch_size=14)
    template = chat_template("[INST]", "[IMG]", "[/INST]", "", bos="<s>")
    proc = tf.PixtralProcessor(image_processor=ip, tokenizer=tok, patch_size=14, spatial_merge_size=2,
                               image_token="[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]",
                               chat_template=template)
    return save_family(seeded_model(config), proc, path)


def fuyu(path: Path) -> Path:
    """Fuyu (a base checkpoint: no chat template): image patches go straight into a Persimmon decoder."""
    import transformers as tf

    tok = build_tokenizer(["<unk>", "<s>", "|ENDOFTEXT|", "<pad>", "\x04"], pad="<pad>", eos="|ENDOFTEXT|",
                          bos="<s>", prefix_space=True, words=("|SPEAKER|", "|NEWLINE|"))
    config = tf.FuyuConfig(
        text_config={"model_type": "persimmon", **_text(tok), "partial_rotary_factor": 0.5},
        image_size=28, patch_size=14, image_token_id=_ids(tok, "|SPEAKER|")[0], pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    ip = tf.FuyuImageProcessorPil(size={"height": 28, "width": 28}, patch_size={"height": 14, "width": 14})
    proc = tf.FuyuProcessor(image_processor=ip, tokenizer=tok)
    return save_family(seeded_model(config), proc, path)


def llava(path: Path) -> Path:
    """LLaVA-1.5 (`superneurons.testing.make_tiny_llava`): CLIP, Llama text."""
    return make_tiny_llava(path, text_layers=LAYERS, hidden=HIDDEN, heads=HEADS)


def _qwen(version: str) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        return make_tiny_qwen_vl(path, version=version, text_layers=LAYERS)  # type: ignore[arg-type]

    build.__doc__ = f"{version} (`superneurons.testing.make_tiny_qwen_vl`): 28 px images, one image token."
    return build


#: model type -> builder(path) -> folder, for every family the conformance suite checks
FAMILY_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "llava": llava, "llava_next": llava_next, "llava_onevision": llava_onevision, "qwen2_vl": _qwen("qwen2_vl"),
    "qwen2_5_vl": _qwen("qwen2_5_vl"), "qwen3_vl": _qwen("qwen3_vl"), "idefics2": idefics2, "idefics3": idefics3,
    "smolvlm": smolvlm, "paligemma": paligemma, "gemma3": gemma3, "mllama": mllama, "internvl": internvl,
    "aya_vision": aya_vision, "glm4v": glm4v, "mistral3": mistral3, "fuyu": fuyu,
}


def make_tiny_family(model_type: str, path: str | Path) -> Path:
    """Build and save a tiny random model of `model_type` (a key of `FAMILY_BUILDERS`) in `path`."""
    if model_type not in FAMILY_BUILDERS:
        raise ValueError(f"no tiny builder for {model_type!r}; known: {', '.join(sorted(FAMILY_BUILDERS))}")
    return FAMILY_BUILDERS[model_type](Path(path))
