"""capture/: hooked activations equal the model's own hidden states, early exit skips layers,
batches do not leak between samples, hooks are always removed, the `last` token, resuming."""

from __future__ import annotations

import pytest
import torch

from superneurons.activations import capture, resolve_layers, run_prefill
from superneurons.activations.trace import LayerTrace, StopForward, resume
from superneurons.data import load_samples

ATOL = 1e-4


@pytest.fixture
def samples(make_dataset, tmp_path):
    return load_samples(make_dataset(tmp_path, 4))


def _plain_forward(vlm, batch):
    with torch.inference_mode():
        return vlm.model(**batch, output_hidden_states=True, use_cache=False)


def _hooks_left(vlm) -> int:
    """LayerTrace hooks still on the decoder layers (transformers installs hooks of its own)."""
    return sum("LayerTrace" in getattr(fn, "__qualname__", "")
               for layer in vlm.decoder_layers for fn in layer._forward_hooks.values())


@pytest.mark.parametrize("name", ["tiny_llava", "tiny_qwen2vl", "tiny_qwen3vl"])
def test_first_token_equals_output_hidden_states(name, samples, request):
    vlm = request.getfixturevalue(name)
    L = vlm.num_layers
    acts = capture(vlm, samples, batch_size=4, progress=False)
    assert acts.shape == (4, L, vlm.hidden_size) and acts.dtype == torch.float32

    batch = vlm.prepare(samples)
    assert not bool(batch["attention_mask"].all()), "questions of different lengths must be padded"
    out = _plain_forward(vlm, batch)
    assert len(out.hidden_states) == L + 1
    for layer in range(L - 1):  # hidden_states[l + 1] is the output of layer l
        torch.testing.assert_close(acts[:, layer], out.hidden_states[layer + 1][:, -1].float(), atol=ATOL, rtol=0)
    # the last entry is after the final norm: compare layer L-1 to a hook on a plain full forward
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, record=[L - 1]) as trace:
        logits = trace.run(vlm.model, **batch, use_cache=False).logits
    torch.testing.assert_close(acts[:, L - 1], trace.outputs[L - 1].float(), atol=ATOL, rtol=0)
    normed = vlm.language_model.norm(trace.outputs[L - 1])
    torch.testing.assert_close(normed, out.hidden_states[-1][:, -1], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, out.logits, atol=ATOL, rtol=0)
    assert _hooks_left(vlm) == 0


def test_early_exit_skips_upper_layers(tiny_llava, samples):
    vlm = tiny_llava
    calls = [0] * vlm.num_layers
    head_calls = [0]
    handles = [layer.register_forward_pre_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, layer in enumerate(vlm.decoder_layers)]
    handles.append(vlm.model.get_output_embeddings().register_forward_pre_hook(
        lambda *a: head_calls.__setitem__(0, head_calls[0] + 1)))
    try:
        early = capture(vlm, samples, exit_layer=1, batch_size=2, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == [2, 2, 0, 0]  # two batches; layers 2 and 3 never ran
    assert head_calls == [0]
    assert early.shape == (4, 2, vlm.hidden_size)
    full = capture(vlm, samples, batch_size=4, progress=False)
    torch.testing.assert_close(early, full[:, :2], atol=ATOL, rtol=0)


def test_layers_subset_stops_at_highest_requested(tiny_llava, samples):
    calls = [0] * tiny_llava.num_layers
    handles = [layer.register_forward_pre_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, layer in enumerate(tiny_llava.decoder_layers)]
    try:
        sub = capture(tiny_llava, samples, layers=[2, 0], batch_size=4, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == [1, 1, 1, 0]
    full = capture(tiny_llava, samples, batch_size=4, progress=False)
    torch.testing.assert_close(sub, full[:, [0, 2]])
    torch.testing.assert_close(capture(tiny_llava, samples, layers=[-1], progress=False), full[:, [3]])


@pytest.mark.parametrize("name", ["tiny_llava", "tiny_qwen2vl", "tiny_qwen3vl"])
def test_batch_independence(name, samples, request):
    vlm = request.getfixturevalue(name)
    one = torch.cat([capture(vlm, [s], batch_size=1, progress=False) for s in samples])
    four = capture(vlm, samples, batch_size=4, progress=False)
    reversed_ = capture(vlm, samples[::-1], batch_size=4, progress=False).flip(0)
    torch.testing.assert_close(four, one, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(reversed_, one, atol=ATOL, rtol=1e-4)


def test_last_token_matches_manual_forward(tiny_llava, samples):
    vlm = tiny_llava
    acts = capture(vlm, samples, token="last", max_new_tokens=3, batch_size=4, progress=False)
    assert acts.shape == (4, vlm.num_layers, vlm.hidden_size)
    one = torch.cat([capture(vlm, [s], token="last", max_new_tokens=3, batch_size=1, progress=False)
                     for s in samples])
    torch.testing.assert_close(acts, one, atol=ATOL, rtol=1e-4)
    # by hand for sample 0: generate, append the tokens, plain forward, take the final position
    batch = vlm.prepare(samples[:1])
    with torch.inference_mode():
        seq = vlm.model.generate(**batch, max_new_tokens=3, do_sample=False, suppress_tokens=vlm.media_token_ids())
        eos = vlm.model.generation_config.eos_token_id
        gen = seq[0, batch["input_ids"].shape[1]:].tolist()
        if eos in gen:
            seq = seq[:, : batch["input_ids"].shape[1] + gen.index(eos) + 1]
        full = dict(batch, input_ids=seq, attention_mask=torch.ones_like(seq))
        out = _plain_forward(vlm, full)
    for layer in range(vlm.num_layers - 1):
        torch.testing.assert_close(acts[0, layer], out.hidden_states[layer + 1][0, -1], atol=ATOL, rtol=0)
    first = capture(vlm, samples[:1], progress=False)
    assert not torch.allclose(first[0, -1], acts[0, -1])


def test_last_token_never_generates_an_image_placeholder(tiny_llava, samples):
    vlm = tiny_llava
    image_id = vlm.model.config.image_token_index
    assert vlm.media_token_ids() == [image_id]
    head = vlm.model.get_output_embeddings()

    def prefer_image(_module, _inputs, logits):  # a model that would answer with its image token
        logits[..., image_id] += 100.0
        return logits

    handle = head.register_forward_hook(prefer_image)
    try:
        batch = vlm.prepare(samples[:2])
        with torch.inference_mode():
            raw = vlm.model.generate(**batch, max_new_tokens=2, do_sample=False)
        assert (raw[:, batch["input_ids"].shape[1]:] == image_id).all()  # unsuppressed, it would
        acts = capture(vlm, samples[:2], token="last", max_new_tokens=2, progress=False)
    finally:
        handle.remove()
    assert acts.shape == (2, vlm.num_layers, vlm.hidden_size) and torch.isfinite(acts).all()


def test_last_token_qwen_mrope(tiny_qwen2vl, samples):
    acts = capture(tiny_qwen2vl, samples, token="last", max_new_tokens=2, batch_size=4, progress=False)
    one = torch.cat([capture(tiny_qwen2vl, [s], token="last", max_new_tokens=2, progress=False) for s in samples])
    torch.testing.assert_close(acts, one, atol=ATOL, rtol=1e-4)


def test_hooks_removed_on_error_and_stop(tiny_llava, samples):
    vlm = tiny_llava
    batch = vlm.prepare(samples[:2])
    with pytest.raises(RuntimeError, match="boom"), LayerTrace(vlm.decoder_layers, stop_after=1):
        assert _hooks_left(vlm) == 2
        raise RuntimeError("boom")
    assert _hooks_left(vlm) == 0
    # a StopForward raised outside `run` propagates but the hooks still go
    with pytest.raises(StopForward), torch.inference_mode(), LayerTrace(vlm.decoder_layers, stop_after=0):
        vlm.model(**batch)
    assert _hooks_left(vlm) == 0
    # an outer trace does not swallow an inner trace's stop
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, record=[0]) as outer:
        inner = LayerTrace(vlm.decoder_layers, record=[1], stop_after=1)
        with inner:
            assert outer.run(inner.run, vlm.model, **batch) is None
    assert inner.stopped and set(outer.outputs) == {0} and _hooks_left(vlm) == 0


def test_resume_reproduces_logits(tiny_llava, samples):
    vlm = tiny_llava
    batch = vlm.prepare(samples)
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, record=[0, 1], stop_after=1) as trace:
        assert trace.run(vlm.model, **batch, use_cache=False) is None
    assert trace.stopped
    logits = resume(vlm, trace, all_positions=True)
    ref = _plain_forward(vlm, batch).logits
    torch.testing.assert_close(logits, ref, atol=ATOL, rtol=0)


def test_run_prefill_rejects_right_padding(tiny_llava, samples):
    batch = tiny_llava.prepare(samples)
    batch["attention_mask"] = batch["attention_mask"].flip(1)
    with pytest.raises(ValueError, match="right padded"):
        run_prefill(tiny_llava, batch)


def test_resolve_layers_validation():
    assert resolve_layers(4, None, None) == ([0, 1, 2, 3], 3)
    assert resolve_layers(4, None, 1) == ([0, 1], 1)
    assert resolve_layers(4, [3, -4], None) == ([0, 3], 3)
    with pytest.raises(ValueError, match="stops before"):
        resolve_layers(4, [0, 2], 1)
    with pytest.raises(ValueError, match="do not exist"):
        resolve_layers(4, [4], None)
    with pytest.raises(ValueError, match="outside"):
        resolve_layers(4, None, 7)


def test_capture_rejects_bad_arguments(tiny_llava, samples):
    with pytest.raises(ValueError, match="token"):
        capture(tiny_llava, samples, token="middle", progress=False)
    with pytest.raises(ValueError, match="exit_layer needs"):
        capture(tiny_llava, samples, token="last", exit_layer=1, progress=False)
