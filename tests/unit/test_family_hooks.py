"""models/: the family hooks every family relies on (image-only processors, inputs, prompts, loading
pass-through, the weight sketch read from the checkpoint files). The per-family checks are in
tests/conformance/."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from superneurons.errors import ModelError
from superneurons.models import VLM, load_model
from superneurons.models.fingerprint import same_fingerprint, weight_sketch
from superneurons.testing.families import make_tiny_family


@pytest.fixture(scope="module")
def smolvlm_dir(tmp_path_factory):
    return make_tiny_family("smolvlm", tmp_path_factory.mktemp("smolvlm"))


def test_image_only_processor_keeps_saved_settings_and_video_attributes(smolvlm_dir):
    from transformers import SmolVLMProcessor

    from superneurons.models.processors import VideoSettings, load_image_only

    cfg_path = smolvlm_dir / "processor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["image_seq_len"] = 7  # a saved setting a *args/**kwargs wrapper would drop
    cfg["video_processor"]["num_frames"] = 5
    cfg_path.write_text(json.dumps(cfg))
    try:
        proc = load_image_only(SmolVLMProcessor, str(smolvlm_dir))
        assert isinstance(proc, SmolVLMProcessor) and proc.image_seq_len == 7
        assert isinstance(proc.video_processor, VideoSettings) and proc.video_processor.num_frames == 5
        # SmolVLM's apply_chat_template reads video_processor.num_frames / fps
        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
        text = proc.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert "<image>" in text and text.endswith("Assistant:")
        with pytest.raises(ModelError, match="torchvision"):
            proc.video_processor.preprocess([])
    finally:
        cfg["image_seq_len"], cfg["video_processor"]["num_frames"] = 1, 8
        cfg_path.write_text(json.dumps(cfg))


def test_encode_nests_images_per_prompt_and_keeps_only_forward_inputs(tmp_path):
    from PIL import Image

    gemma = load_model(str(make_tiny_family("gemma3", tmp_path / "g")), device="cpu")
    assert gemma.nested_images
    im = Image.new("RGB", (24, 24), (200, 30, 30))
    prompts = [gemma.build_prompt("Is it red ?"), gemma.build_prompt("Is it red or blue ?")]
    assert gemma.processor_images([im, im], prompts) == [[im], [im]]
    enc = gemma.encode(prompts, [im, im])
    assert "token_type_ids" in enc and int(enc["token_type_ids"].sum()) == 8  # 4 image tokens per prompt
    pali = load_model(str(make_tiny_family("paligemma", tmp_path / "p")), device="cpu")
    enc = pali.encode([pali.build_prompt("Is it red ?")], [im])
    assert "labels" not in enc and "token_type_ids" in enc  # a training target never reaches the forward
    new = torch.tensor([[5, 6]])
    grown = pali.extend_tokens(dict(enc), new, torch.ones_like(new))
    assert grown["input_ids"].shape == grown["token_type_ids"].shape == grown["attention_mask"].shape
    assert grown["input_ids"][0, -2:].tolist() == [5, 6]
    assert grown["token_type_ids"][0, -2:].tolist() == [1, 1]  # the suffix, as PaliGemma's generate extends it


def test_plain_prompt_for_checkpoints_without_a_chat_template(tmp_path):
    pali = load_model(str(make_tiny_family("paligemma", tmp_path / "p")), device="cpu")
    assert pali.chat_template_owner() is None
    assert pali.prompt_template == "<image>answer en {question}"
    with pytest.raises(ModelError, match=r"'paligemma' family declares no prompt.*plain_prompt"):
        VLM(pali.model, pali.processor, name_or_path="ckpt")


def test_unknown_model_type_error_names_it_and_the_hook(tmp_path, tiny_llava_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    text_only = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(text_only)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llava_dir / name, text_only / name)
    with pytest.raises(ModelError, match=r"model type 'llama'.*VLM\.load_"):
        load_model(str(text_only), device="cpu")


def test_from_pretrained_options_pass_through(tiny_llava_dir, monkeypatch):
    from transformers import AutoModelForImageTextToText

    seen = {}
    original = AutoModelForImageTextToText.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        kwargs.pop("quantization_config")  # a stand-in: bitsandbytes needs a GPU
        return original(path, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    quant = object()
    vlm = load_model(str(tiny_llava_dir), dtype="bfloat16", device="cpu", quantization_config=quant,
                     device_map={"": "cpu"}, attn_implementation="eager")
    assert seen["quantization_config"] is quant and seen["device_map"] == {"": "cpu"}
    assert seen["attn_implementation"] == "eager" and seen["dtype"] == torch.bfloat16
    assert vlm.model.config._attn_implementation == "eager"


def test_weight_sketch_is_read_from_the_checkpoint_files(tiny_llava, tiny_llava_dir):
    """An fp32 checkpoint loaded in bf16, or with a layer matrix packed like a 4-bit load, has the
    fp32 load's sketch: a classifier found on one is accepted on the other."""
    full = tiny_llava.fingerprint
    bf16 = load_model(str(tiny_llava_dir), dtype="bfloat16", device="cpu")
    assert bf16.fingerprint["weights"] == full["weights"]
    layer0 = bf16.decoder_layers[0].self_attn.q_proj
    packed = torch.randint(0, 255, (layer0.weight.numel() // 2, 1), dtype=torch.uint8)
    layer0.weight = torch.nn.Parameter(packed, requires_grad=False)  # what bitsandbytes' Params4bit holds
    assert bf16.weight_sketch() == full["weights"]
    in_memory = weight_sketch([bf16.model.get_input_embeddings().weight,
                               *[p for _, p in sorted(bf16.decoder_layers[0].named_parameters()) if p.dim() >= 2]])
    assert in_memory != full["weights"]  # memory alone would reject the quantized load
    fp = {**full, "weights": bf16.weight_sketch()}
    assert same_fingerprint(fp, full)


def test_weight_sketch_falls_back_to_memory_without_safetensors(tiny_llava):
    vlm = VLM.__new__(VLM)
    vlm.model, vlm.decoder_layers, vlm.name_or_path, vlm.hub_kwargs = (tiny_llava.model, tiny_llava.decoder_layers,
                                                                       "/nonexistent", {})
    assert vlm.weight_sketch() == tiny_llava.fingerprint["weights"]


def test_a_processor_that_needs_torchvision_is_a_clear_error(tiny_llava_dir, tmp_path):
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision is installed: PixtralProcessor loads")
    folder = tmp_path / "pixtral-like"
    shutil.copytree(tiny_llava_dir, folder)
    cfg = json.loads((folder / "processor_config.json").read_text())
    (folder / "processor_config.json").write_text(json.dumps({**cfg, "processor_class": "PixtralProcessor"}))
    with pytest.raises(ModelError, match=r"model type 'llava'.*Torchvision.*install it"):
        load_model(str(folder), device="cpu")
