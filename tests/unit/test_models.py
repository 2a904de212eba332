"""models/: each adapter loads a saved tiny model through `load_model` and knows its structure."""

from __future__ import annotations

import json

import pytest
import torch

from superneurons.activations import capture
from superneurons.data import load_samples
from superneurons.errors import ModelError
from superneurons.models import VLM, adapter_names, get_adapter, load_model
from superneurons.models.llava import LlavaVLM
from superneurons.models.qwen_vl import Qwen3VLM, QwenVLM
from superneurons.testing.factory import make_tiny_llava, make_tiny_qwen_vl


@pytest.fixture
def samples(make_dataset, tmp_path):
    return load_samples(make_dataset(tmp_path, 4))


@pytest.mark.parametrize(("fixture", "cls", "arch", "marker"), [
    ("tiny_llava_dir", LlavaVLM, "LlavaForConditionalGeneration", "ASSISTANT:"),
    ("tiny_qwen2vl_dir", QwenVLM, "Qwen2VLForConditionalGeneration", "<|im_start|>assistant\n"),
    ("tiny_qwen25vl_dir", QwenVLM, "Qwen2_5_VLForConditionalGeneration", "<|im_start|>assistant\n"),
    ("tiny_qwen3vl_dir", Qwen3VLM, "Qwen3VLForConditionalGeneration", "<|im_start|>assistant\n"),
])
def test_adapter_loads_saved_folder_and_captures(fixture, cls, arch, marker, samples, request):
    path = request.getfixturevalue(fixture)
    vlm = load_model(str(path), dtype="float32", device="cpu")
    assert type(vlm) is cls
    assert vlm.decoder_layers is vlm.model.model.language_model.layers
    assert vlm.decoder_layers is vlm.model.get_decoder().layers
    cfg = json.loads((path / "config.json").read_text())
    assert vlm.num_layers == cfg["text_config"]["num_hidden_layers"] == len(vlm.decoder_layers)
    assert vlm.hidden_size == cfg["text_config"]["hidden_size"]
    assert vlm.device == torch.device("cpu") and vlm.dtype == torch.float32
    fp = vlm.fingerprint
    assert fp["architecture"] == arch and len(fp["config_hash"]) == 64
    assert (fp["num_layers"], fp["hidden_size"]) == (vlm.num_layers, vlm.hidden_size)
    # prompt: the question as the user turn, generation prompt appended
    assert vlm.prompt_template.count("{question}") == 1 and vlm.prompt_template.endswith(marker)
    prompt = vlm.build_prompt("Is there a dog ?")
    assert prompt == vlm.prompt_template.replace("{question}", "Is there a dog ?")
    enc = vlm.prepare(samples)
    assert bool(enc["attention_mask"][:, -1].all()) and not bool(enc["attention_mask"][:, 0].all())  # left padded
    yes, no = vlm.yes_no_token_ids()
    assert yes and no and not set(yes) & set(no)
    assert vlm.tokenizer.decode([yes[0]]).strip().lower() == "yes"
    acts = capture(vlm, samples, batch_size=2, progress=False)
    assert acts.shape == (4, vlm.num_layers, vlm.hidden_size) and torch.isfinite(acts).all()


def test_fingerprint_is_stable_and_tracks_the_config(tiny_llava, tiny_llava_dir, tmp_path):
    again = load_model(str(tiny_llava_dir), dtype="float32", device="cpu")
    assert again.fingerprint == tiny_llava.fingerprint
    other = load_model(str(make_tiny_llava(tmp_path / "m", text_layers=2)), device="cpu")
    assert other.fingerprint["config_hash"] != tiny_llava.fingerprint["config_hash"]
    assert other.num_layers == 2


def test_weight_sketch_survives_dtype_and_tells_retrained_checkpoints_apart(tiny_llava, tiny_llava_dir, tmp_path):
    from superneurons.models.fingerprint import same_weights

    fp = tiny_llava.fingerprint
    assert len(fp["weights"]) == 64  # 256 sign bits
    for dtype in ("bfloat16", "float16"):
        cast = load_model(str(tiny_llava_dir), dtype=dtype, device="cpu")
        assert cast.fingerprint["config_hash"] == fp["config_hash"] and same_weights(cast.fingerprint, fp)
    retrained = load_model(str(make_tiny_llava(tmp_path / "r", text_layers=4, hidden=64, vision_hidden=32, seed=1)),
                           device="cpu")
    assert retrained.fingerprint["config_hash"] == fp["config_hash"]  # the config cannot tell them apart
    assert not same_weights(retrained.fingerprint, fp)
    assert same_weights(fp, {k: v for k, v in fp.items() if k != "weights"})  # older artifacts: no sketch


def test_registry_and_generic_fallback(tiny_llava, tiny_llava_dir, samples):
    assert {"llava", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "auto"} <= set(adapter_names())
    assert get_adapter("llava") is LlavaVLM and get_adapter("some_new_vlm") is VLM
    with pytest.raises(ModelError, match=r"known: .*llava.*qwen3_vl"):
        get_adapter("nope", strict=True)
    with pytest.raises(ModelError, match="known:"):
        load_model(str(tiny_llava_dir), adapter="nope")
    generic = load_model(str(tiny_llava_dir), device="cpu", adapter="auto")
    assert type(generic) is VLM and generic.num_layers == tiny_llava.num_layers
    torch.testing.assert_close(capture(generic, samples, progress=False), capture(tiny_llava, samples, progress=False))


def test_load_errors_name_the_fix(tmp_path, tiny_llava_dir):
    with pytest.raises(ModelError, match="save_pretrained"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="float16"):
        load_model(str(tiny_llava_dir), dtype="float8")
    with pytest.raises(ModelError, match="device"):
        load_model(str(tiny_llava_dir), device="gpu0")


def test_dtype_option(tiny_llava, tiny_llava_dir):
    vlm = load_model(str(tiny_llava_dir), dtype="bfloat16", device="cpu")
    assert vlm.dtype == torch.bfloat16
    assert vlm.fingerprint == tiny_llava.fingerprint  # same checkpoint, another run-time dtype
    assert load_model(str(tiny_llava_dir), device="cpu").dtype == torch.float32  # auto on cpu


def test_factory_passes_config_overrides(tmp_path):
    path = make_tiny_llava(tmp_path / "m", text_layers=2, hidden=64,
                           text_config={"num_key_value_heads": 2, "vocab_size": 1000},
                           vision_config={"num_hidden_layers": 1})
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["text_config"]["num_key_value_heads"] == 2 and cfg["text_config"]["vocab_size"] == 1000
    assert cfg["vision_config"]["num_hidden_layers"] == 1
    assert (path / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (path / "tokenizer_config.json").read_text())
    with pytest.raises(ValueError, match="qwen2_vl"):
        make_tiny_qwen_vl(tmp_path / "q", version="qwen4_vl")
