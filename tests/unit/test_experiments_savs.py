"""experiments/savs.py: SAVs pick a planted separating head, per-head outputs are the real o_proj
input, the forward stops early, and the experiment compares SAVs with SNs at the same N."""

from __future__ import annotations

import json

import pytest
import torch
from experiment_fixtures import load_exp_vlm, probe_val

from superneurons.errors import DataError
from superneurons.experiments import fit_savs, head_outputs, run_experiment
from superneurons.experiments._common import ExperimentOptions


def _planted(n: int, layer: int, head: int, seed: int, shape=(3, 4, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise head outputs [n, L, H, hd] where only (layer, head) points along +v for yes, -v for no."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    acts = torch.randn(n, *shape, generator=g)
    v = torch.randn(shape[-1], generator=torch.Generator().manual_seed(99))
    acts[:, layer, head] = 0.3 * torch.randn(n, shape[-1], generator=g) + (2 * y - 1)[:, None].float() * v
    return acts, y


@pytest.fixture(scope="module")
def vlm(tiny_llava_dir):
    return load_exp_vlm(tiny_llava_dir)


def test_planted_head_is_chosen_first():
    acts, y = _planted(40, layer=2, head=1, seed=0)
    savs = fit_savs(acts, y, k=3)
    assert savs.heads[0].tolist() == [2, 1]
    assert float(savs.accuracy[0]) == 1.0 and savs.head_accuracy.shape == (3, 4)
    assert float(savs.head_accuracy.reshape(-1).sort().values[-2]) < 1.0  # noise heads do not separate
    test, y_test = _planted(30, layer=2, head=1, seed=1)
    only = fit_savs(acts, y, k=1)
    preds = only.predict(test[:, 2, 1][:, None])
    assert preds.tolist() == y_test.tolist()


def test_layer_ids_and_vote():
    acts, y = _planted(20, layer=0, head=3, seed=2)
    savs = fit_savs(acts, y, k=5, layers=[5, 6, 7])
    assert savs.heads[0].tolist() == [5, 3] and savs.k == 5 and savs.exit_layer <= 7
    votes = torch.tensor([[True, True, False], [True, False, False], [True, False, True], [False, False, True]])
    from superneurons.inference.aggregation import vote

    assert vote(votes).tolist() == [1, 0, 1, 0]


def test_fit_savs_rejects_one_class_and_bad_shapes():
    acts, _ = _planted(10, 0, 0, seed=3)
    with pytest.raises(DataError, match="both classes"):
        fit_savs(acts, torch.ones(10, dtype=torch.long))
    with pytest.raises(DataError, match=r"\[N, L, H, hd\]"):
        fit_savs(acts[:, 0], torch.arange(10) % 2)


def test_head_outputs_are_the_o_proj_input(vlm, tmp_path):
    probe, _ = probe_val(tmp_path, 4, 2)
    heads = head_outputs(vlm, probe, batch_size=4)
    n_heads = vlm.text_config.num_attention_heads
    assert heads.shape == (4, vlm.num_layers, n_heads, vlm.hidden_size // n_heads)
    # the attention block's output at the last position is o_proj of the concatenated heads
    batch = vlm.prepare(probe)
    seen = {}
    hooks = [layer.self_attn.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out[0][:, -1]))
             for i, layer in enumerate(vlm.decoder_layers)]
    try:
        with torch.inference_mode():
            vlm.model(**batch, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    for i, layer in enumerate(vlm.decoder_layers):
        mixed = layer.self_attn.o_proj(heads[:, i].reshape(4, -1))
        torch.testing.assert_close(mixed, seen[i], atol=1e-4, rtol=0)
    chosen = torch.tensor([[2, 1], [0, 3], [2, 0]])
    sel = head_outputs(vlm, probe, heads=chosen, batch_size=3)
    torch.testing.assert_close(sel, heads[:, chosen[:, 0], chosen[:, 1]])


def test_head_outputs_stop_after_the_deepest_layer(vlm, tmp_path):
    probe, _ = probe_val(tmp_path, 2, 2)
    calls = [0] * vlm.num_layers
    hooks = [layer.register_forward_pre_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, layer in enumerate(vlm.decoder_layers)]
    try:
        out = head_outputs(vlm, probe, heads=torch.tensor([[1, 0]]))
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (2, 1, 16) and calls == [1, 1, 0, 0]


def test_savs_experiment_end_to_end(vlm, tmp_path):
    probe, val = probe_val(tmp_path)
    res = run_experiment("savs", vlm, probe=probe, val=val, out_dir=tmp_path / "out", n=8, k=3,
                         options=ExperimentOptions(max_new_tokens=2))
    methods = [r["method"] for r in res.rows]
    assert methods == ["model", "SAVs", "SNs (mean)", "SNs (vote)"]
    savs, sn = res.rows[1], res.rows[2]
    assert savs["N"] == sn["N"] == 8 and savs["k"] == 3 and savs["n"] == len(val)
    # red/blue images: both classifiers separate the classes of this toy set
    assert savs["accuracy"] > 0.9 and sn["accuracy"] > 0.9
    data = json.loads((tmp_path / "out" / "savs.json").read_text())
    assert data["rows"][1]["method"] == "SAVs" and len(data["meta"]["heads"]["data"]) == 3
    assert "| data | SAVs | 8 |" in (tmp_path / "out" / "savs.md").read_text()
