"""`superneurons.bench`: what each timed path runs, the rows and ratios, and the `bench` command."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from superneurons.cli.app import _register_all, app
from superneurons.data import load_samples
from superneurons.errors import DataError
from superneurons.evaluation import bench as B


def _count_layers(vlm) -> tuple[list[int], list]:
    ran: list[int] = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
               for i, layer in enumerate(vlm.decoder_layers)]
    return ran, handles


def test_bare_exit_runs_only_the_layers_up_to_k(tiny_llava, make_dataset, tmp_path):
    batch = tiny_llava.prepare(load_samples(make_dataset(tmp_path, 2)))
    before = [len(layer._forward_hooks) for layer in tiny_llava.decoder_layers]
    ran, handles = _count_layers(tiny_llava)
    try:
        with torch.inference_mode():
            B._bare_exit(tiny_llava, batch, 1)
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1]
    assert [len(layer._forward_hooks) for layer in tiny_llava.decoder_layers] == before  # hook removed


def test_timing_classifier(tiny_llava):
    clf = B.timing_classifier(tiny_llava, 2, k=5)
    assert clf.exit_layer == 2 and clf.sns.k == 5 and clf.layers_needed == [2]
    assert len(set(clf.sns.neurons.tolist())) == 5 and int(clf.sns.neurons.max()) < tiny_llava.hidden_size
    clf.check_compatible(tiny_llava)  # same fingerprint and template
    with pytest.raises(DataError, match="outside the model's layers"):
        B.timing_classifier(tiny_llava, tiny_llava.num_layers)


def test_run_bench_rows_and_ratios(tiny_llava, make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 6))
    deep = B.timing_classifier(tiny_llava, 2, k=3)
    res = B.run_bench(tiny_llava, samples, classifiers=[deep], exit_layers=[1], k=4, batch_size=3,
                      max_new_tokens=3, repeats=2, warmup=0, progress=False)
    keys = [r.key for r in res.rows]
    assert keys == ["generate_3", "generate_1", "prefill", "prepare", "bare_exit_L1", "sn_L1", "sn_e2e_L1",
                    "bare_exit_L2", "sn_L2", "sn_e2e_L2"]
    assert all(len(r.runs) == 2 and r.seconds_per_sample > 0 for r in res.rows)
    assert res.batch_size == 3 and res.image_tokens > 0 and res.prompt_tokens > res.image_tokens
    assert 1 <= res.row("generate_3").new_tokens <= 3 and res.row("generate_1").new_tokens == 1
    assert res.row("sn_L1").bare_key == "bare_exit_L1" and res.row("sn_L2").decoder_layers_run == 3
    assert res.exit_layers == [1, 2]
    assert res.speedup("sn_L1", "prefill") == pytest.approx(
        res.row("prefill").seconds_per_sample / res.row("sn_L1").seconds_per_sample)
    assert res.overhead(1) == pytest.approx(
        res.row("sn_L1").seconds_per_sample / res.row("bare_exit_L1").seconds_per_sample)
    d = json.loads(json.dumps(res.to_dict()))
    assert {"sn_L1_over_bare_exit", "sn_L2_vs_prefill", "sn_L1_vs_generate_1"} <= set(d["summary"])
    assert [s["timing_only"] for s in d["sn_sets"]] == [True, True]
    with pytest.raises(DataError, match="no bench row"):
        res.row("nope")


def test_run_bench_checks_inputs(tiny_llava):
    with pytest.raises(DataError, match="no samples"):
        B.run_bench(tiny_llava, [])


def test_bench_command(tiny_llava_dir, make_dataset, tmp_path):
    _register_all()
    data = make_dataset(tmp_path, 4)
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--model", str(tiny_llava_dir), "--data", str(data), "--batch-size", "2",
                                   "--max-new-tokens", "2", "--repeats", "1", "--warmup", "0", "--no-generate",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert [r["key"] for r in d["rows"]] == ["prefill", "prepare", "bare_exit_L1", "sn_L1", "sn_e2e_L1"]
    assert "SNs at L*=1:" in res.output and "faster than the prefill; library / bare exit =" in res.output
