"""distributed.py without launching processes: slicing, env detection, merging, refusals.

The real 2-process runs (torchrun + gloo, kill and resume) are in tests/e2e/test_distributed.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from superneurons.activations.distributed import (
    RANK_DIR,
    DistInfo,
    dist_info,
    init_distributed,
    merge_rank_stores,
    rank_device,
    rank_slice,
)
from superneurons.activations.probing import probe, probe_distributed
from superneurons.activations.store import ActivationStore
from superneurons.constants import MANIFEST_NAME
from superneurons.data import load_samples
from superneurons.errors import StoreError


@pytest.fixture
def samples(make_dataset, tmp_path):
    return load_samples(make_dataset(tmp_path / "data", 7))


@pytest.fixture
def no_launcher(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(("n", "world"), [(7, 2), (10, 3), (2, 4), (0, 2), (5, 1)])
def test_rank_slices_are_contiguous_balanced_and_cover(n, world):
    slices = [rank_slice(n, r, world) for r in range(world)]
    assert slices[0][0] == 0 and slices[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
    sizes = [hi - lo for lo, hi in slices]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError):
        rank_slice(n, world, world)


def test_dist_info_from_launcher_env(monkeypatch, no_launcher):
    assert dist_info() == DistInfo(0, 1, 0) and not dist_info().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info()
    assert info == DistInfo(3, 4, 1) and info.distributed and not info.is_main
    assert rank_device("cpu", info) == "cpu"
    with pytest.raises(StoreError, match="MASTER_ADDR"):
        init_distributed()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(StoreError, match="torchrun"):
        dist_info()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(StoreError, match="RANK='x'"):
        dist_info()


def _probe_ranks(vlm, samples, out, world, **kw):
    """What each rank of a `world`-process job writes, done one rank after the other."""
    for r in range(world):
        lo, hi = rank_slice(len(samples), r, world)
        if hi > lo:
            probe(vlm, samples[lo:hi], out / RANK_DIR.format(r), require_labels=False, progress=False,
                  rank_split=False, **kw)
    return merge_rank_stores(out, world, len(samples))


def test_merged_store_reads_like_a_single_process_store(tiny_llava, samples, tmp_path, no_launcher):
    kw = {"dtype": "float32", "shard_size": 2, "batch_size": 3, "exit_layer": 2}
    ref = probe(tiny_llava, samples, tmp_path / "single", progress=False, **kw)
    m = _probe_ranks(tiny_llava, samples, tmp_path / "dist", 3, **kw)
    assert m["complete"] and m["world_size"] == 3 and m["num_samples"] == 7
    assert [r["inputs"] for r in m["ranks"]] == [[0, 3], [3, 5], [5, 7]]
    assert m["shards"][0]["file"] == "rank-00000/shard-00000.safetensors"
    store = ActivationStore(tmp_path / "dist")
    assert store.ids == ref.ids and store.labels.tolist() == ref.labels.tolist()
    assert store.layers == ref.layers and store.fingerprint == ref.fingerprint
    assert m["question_format"] == ref.manifest["question_format"]  # of all ranks' questions
    torch.testing.assert_close(store.read(), ref.read())
    torch.testing.assert_close(store.read([2, 0]), ref.read([2, 0]))


def test_mixing_single_and_distributed_stores_is_refused(tiny_llava, samples, tmp_path, no_launcher):
    kw = {"dtype": "float32", "shard_size": 4, "exit_layer": 1}
    _probe_ranks(tiny_llava, samples, tmp_path / "dist", 2, **kw)
    with pytest.raises(StoreError, match="number of processes"):
        probe(tiny_llava, samples, tmp_path / "dist", progress=False, **kw)
    with pytest.raises(StoreError, match="written by 2 processes.*--nproc_per_node 2"):
        probe_distributed(tiny_llava, samples, tmp_path / "dist", info=DistInfo(0, 3, 0), progress=False, **kw)
    probe(tiny_llava, samples, tmp_path / "single", progress=False, **kw)
    with pytest.raises(StoreError, match="single-process store"):
        probe_distributed(tiny_llava, samples, tmp_path / "single", info=DistInfo(1, 2, 1), progress=False, **kw)


def test_merge_compares_fingerprints_with_their_weight_sketch(tiny_llava, samples, tmp_path, no_launcher):
    out = tmp_path / "dist"
    _probe_ranks(tiny_llava, samples, out, 2, dtype="float32", shard_size=4, exit_layer=1)
    path = out / RANK_DIR.format(1) / MANIFEST_NAME
    m = json.loads(path.read_text())
    sketch = m["fingerprint"].pop("weights")  # rank 1 written before fingerprints had a sketch
    path.write_text(json.dumps(m))
    assert merge_rank_stores(out, 2, len(samples))["complete"]
    m["fingerprint"]["weights"] = format(int(sketch, 16) ^ int("f" * 16, 16), f"0{len(sketch)}x")  # another run
    path.write_text(json.dumps(m))
    with pytest.raises(StoreError, match="disagree on 'fingerprint'"):
        merge_rank_stores(out, 2, len(samples))


def test_merge_of_an_unfinished_job_is_incomplete(tiny_llava, samples, tmp_path, no_launcher):
    out = tmp_path / "dist"
    lo, hi = rank_slice(len(samples), 0, 2)
    probe(tiny_llava, samples[lo:hi], out / RANK_DIR.format(0), require_labels=False, progress=False,
          rank_split=False, dtype="float32", exit_layer=1)
    m = merge_rank_stores(out, 2, len(samples))  # rank 1 never wrote anything
    assert not m["complete"] and m["num_samples"] == hi - lo
    assert json.loads((out / MANIFEST_NAME).read_text())["complete"] is False
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore(out)
    with pytest.raises(StoreError, match="another job"):
        merge_rank_stores(out, 2, len(samples) + 4)  # rank 0's folder does not hold rank 0's slice


def test_probe_under_a_launcher_env_goes_distributed(tiny_llava, samples, tmp_path, monkeypatch, no_launcher):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(StoreError, match="MASTER_ADDR"):  # it tries to join the job instead of writing alone
        probe(tiny_llava, samples, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
