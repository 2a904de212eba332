"""Every model family passes the same checks (tiny random checkpoints, CPU, no network).

For each family of `superneurons.models.registry.CHECKED_FAMILIES`: `load_model` picks its adapter;
capture at the last prompt position of a left-padded batch of 3 prompts equals a per-sample plain
forward (`output_hidden_states` for layers 0..L-2, a hook for L-1, whose hidden state transformers
reports after the final norm); a batch of 1 equals a batch of 3; `exit_layer=0` runs one decoder
layer and never the LM head; first-token yes/no margins equal the plain forward's; greedy
generation decodes and parses; `max_layer=1` loading equals the full model on layers 0..1; prefix
reuse and cascade resume equal the plain path, or the family declares them unsupported
(`VLM.support`) and the library refuses or falls back, saying so. A family that cannot run here
is checked to be still blocked for the reason the table gives.

Fixtures: `family_dir(model_type)` builds `superneurons.testing.families.FAMILY_BUILDERS[model_type]`
into a session folder on first use (then returns the cached path); `family_vlm(model_type)` loads it
with `load_model` (CPU, float32) once. `samples` are 3 images with questions of different lengths (so
a batch is left padded); `shared_samples` ask 3 questions about one image and 1 about another.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest
import torch

from superneurons.activations import capture
from superneurons.activations.trace import check_resumable, verify_resume
from superneurons.data.samples import Sample
from superneurons.errors import ModelError
from superneurons.evaluation.baselines import first_token_margins, generate_answers, parse_answers
from superneurons.models import load_model
from superneurons.models.registry import CHECKED_FAMILIES, get_adapter

QUESTIONS = ["Is there a dog ?", "Is there a red cube on the left in the image ?",
             "Answer with yes or no : is there a small blue sphere behind the car in this picture ?"]


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory: pytest.TempPathFactory):
    from superneurons.testing.families import make_tiny_family

    built: dict[str, Path] = {}

    def get(model_type: str) -> Path:
        if model_type not in built:
            built[model_type] = make_tiny_family(model_type, tmp_path_factory.mktemp(model_type))
        return built[model_type]

    return get


@pytest.fixture(scope="module")
def family_vlm(family_dir):
    from superneurons.models import load_model

    loaded: dict[str, object] = {}

    def get(model_type: str):
        if model_type not in loaded:
            loaded[model_type] = load_model(str(family_dir(model_type)), dtype="float32", device="cpu")
        return loaded[model_type]

    return get


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 24 px PNGs of different colours, with noise."""
    import random

    from PIL import Image

    root = tmp_path_factory.mktemp("conformance-images")
    rng = random.Random(0)
    out = []
    for i, base in enumerate([(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40)]):
        im = Image.new("RGB", (24, 24), base)
        px = im.load()
        for _ in range(96):
            px[rng.randrange(24), rng.randrange(24)] = tuple(rng.randrange(256) for _ in range(3))
        out.append(root / f"im{i}.png")
        im.save(out[-1])
    return out


@pytest.fixture(scope="module")
def samples(images) -> list[Sample]:
    return [Sample(id=f"s{i}", image=images[i], question=q, label=("yes", "no")[i % 2])
            for i, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def references(family_vlm, samples):
    """`references(model_type)` -> (hidden states [3, L, D], last-position logits [3, V]) of `samples`,
    one plain forward per sample (cached)."""
    done: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(model_type: str) -> tuple[torch.Tensor, torch.Tensor]:
        if model_type not in done:
            vlm = family_vlm(model_type)
            rows = [_reference(vlm, s) for s in samples]
            done[model_type] = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
        return done[model_type]

    return get


@pytest.fixture(scope="module")
def shared_samples(images) -> list[Sample]:
    own = [Sample(id=f"p{i}", image=images[0], question=q, label="yes") for i, q in enumerate(QUESTIONS)]
    return [*own, Sample(id="p3", image=images[3], question=QUESTIONS[1], label="no")]


RUNS = [mt for mt, blocked in CHECKED_FAMILIES.items() if not blocked]
BLOCKED = [mt for mt, blocked in CHECKED_FAMILIES.items() if blocked]
ATOL = 2e-4  # float32 tiny models differ by ~1e-6 between batch shapes


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-3)


def _reference(vlm, sample) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 [L, D] hidden states, [V] last-position logits) of one sample, unpadded, from one plain
    full forward of the processor's output."""
    prompt = vlm.build_prompt(sample.question)
    enc = vlm.processor(images=vlm.processor_images([sample.load_image()], [prompt]), text=[prompt],
                        return_tensors="pt")
    params = inspect.signature(vlm.model.forward).parameters
    enc = {k: v for k, v in enc.items() if k in params and k != "labels"}
    last: dict[str, torch.Tensor] = {}
    handle = vlm.decoder_layers[-1].register_forward_hook(
        lambda m, a, out: last.__setitem__("h", (out[0] if isinstance(out, tuple) else out)[:, -1]))
    try:
        with torch.inference_mode():
            out = vlm.model(**enc, output_hidden_states=True, use_cache=False)
    finally:
        handle.remove()
    hs = out.hidden_states
    assert len(hs) == vlm.num_layers + 1
    rows = [hs[i + 1][0, -1] for i in range(vlm.num_layers - 1)] + [last["h"][0]]
    return torch.stack(rows).float(), out.logits[0, -1].float()


@pytest.mark.parametrize("model_type", RUNS)
def test_load_model_picks_the_adapter(model_type, family_dir, family_vlm):
    vlm = family_vlm(model_type)
    assert vlm.model.config.model_type == model_type
    assert type(vlm) is get_adapter(model_type)
    assert vlm.num_layers >= 3 and vlm.prompt_template.count("{question}") == 1


@pytest.mark.parametrize("model_type", RUNS)
def test_capture_equals_a_plain_forward_and_batches_do_not_matter(model_type, family_vlm, samples, references):
    vlm = family_vlm(model_type)
    assert vlm.support.capture
    enc = vlm.prepare(samples)
    mask = enc["attention_mask"]
    assert bool(mask[:, -1].all()) and not bool(mask[:, 0].all()), "the batch of 3 must be left padded"
    batched = capture(vlm, samples, batch_size=3, progress=False)
    single = capture(vlm, samples, batch_size=1, progress=False)
    _close(batched, references(model_type)[0])
    _close(single, batched)


@pytest.mark.parametrize("model_type", RUNS)
def test_exit_layer_0_runs_one_layer_and_never_the_lm_head(model_type, family_vlm, samples):
    vlm = family_vlm(model_type)
    assert vlm.support.early_exit
    calls: list[str] = []
    handles = [layer.register_forward_hook(lambda *a, i=i: calls.append(f"layer{i}"))
               for i, layer in enumerate(vlm.decoder_layers)]
    handles.append(vlm.lm_head.register_forward_hook(lambda *a: calls.append("lm_head")))
    try:
        acts = capture(vlm, samples, exit_layer=0, batch_size=3, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == ["layer0"]
    _close(acts[:, 0], capture(vlm, samples, batch_size=3, progress=False)[:, 0])


@pytest.mark.parametrize("model_type", RUNS)
def test_first_token_margins_equal_the_plain_forward(model_type, family_vlm, samples, references):
    vlm = family_vlm(model_type)
    _close(first_token_margins(vlm, samples, batch_size=3), vlm.yes_no_margin(references(model_type)[1]))


@pytest.mark.parametrize("model_type", RUNS)
def test_greedy_generation_decodes_and_parses(model_type, family_vlm, samples):
    vlm = family_vlm(model_type)
    texts = generate_answers(vlm, samples, max_new_tokens=3, batch_size=3)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert set(parse_answers(texts, "pope")) <= {0, 1}
    assert set(parse_answers(texts, "strict")) <= {-1, 0, 1}


@pytest.mark.parametrize("model_type", RUNS)
def test_truncated_loading_equals_the_full_model(model_type, family_dir, family_vlm, samples):
    vlm = family_vlm(model_type)
    if not vlm.support.truncate:
        with pytest.raises(ModelError, match="truncat"):
            load_model(str(family_dir(model_type)), dtype="float32", device="cpu", max_layer=1)
        return
    small = load_model(str(family_dir(model_type)), dtype="float32", device="cpu", max_layer=1)
    assert small.num_layers == 2 and small.fingerprint == vlm.fingerprint
    _close(capture(small, samples, batch_size=3, progress=False),
           capture(vlm, samples, layers=[0, 1], batch_size=3, progress=False))


@pytest.mark.parametrize("model_type", RUNS)
def test_prefix_reuse_equals_the_plain_path_or_falls_back_saying_so(model_type, family_vlm, shared_samples,
                                                                    monkeypatch):
    from superneurons.activations import prefix
    from superneurons.activations.prefix import capture_prefix, prefix_reuse_support

    reused_groups = []
    group_acts = prefix._group_acts

    def spy(*args, **kwargs):
        out = group_acts(*args, **kwargs)
        reused_groups.append(out is not None)
        return out

    monkeypatch.setattr(prefix, "_group_acts", spy)
    vlm = family_vlm(model_type)
    plain = capture(vlm, shared_samples, batch_size=4, progress=False)
    ok, why = prefix_reuse_support(vlm)
    if not vlm.support.prefix_reuse:
        assert not ok and "not exact" in why
        with pytest.warns(UserWarning, match="not exact"):
            reused = capture_prefix(vlm, shared_samples, batch_size=4)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            reused = capture_prefix(vlm, shared_samples, batch_size=2)
        assert reused_groups == [True], "the 3 questions on one image must share an encoded prefix"
    _close(reused, plain)


@pytest.mark.parametrize("model_type", RUNS)
def test_cascade_resume_equals_a_full_forward_or_is_refused(model_type, family_vlm, samples):
    vlm = family_vlm(model_type)
    if not vlm.support.cascade:
        with pytest.raises(ModelError, match="cascade"):
            check_resumable(vlm, 0)
        return
    for exit_layer in range(vlm.num_layers - 1):
        assert verify_resume(vlm, samples, exit_layer, atol=ATOL) <= ATOL


@pytest.mark.parametrize("model_type", BLOCKED)
def test_a_blocked_family_is_still_blocked_for_the_reason_given(model_type, tmp_path):
    """When transformers lifts the blocker this fails: then move the family to the runnable ones."""
    from transformers.utils import is_torchvision_available

    from superneurons.testing.families import make_tiny_family

    if is_torchvision_available():
        pytest.skip("the blocker is torchvision being missing; it is installed here")
    assert "torchvision" in CHECKED_FAMILIES[model_type]
    with pytest.raises(ImportError, match="torchvision|Torchvision"):
        make_tiny_family(model_type, tmp_path / model_type)
