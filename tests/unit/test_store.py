"""store.py: sharded safetensors + manifest, resume after a kill, refusal of a mismatched store."""

from __future__ import annotations

import json
import os

import pytest
import torch

from superneurons.activations import capture
from superneurons.activations.probing import probe
from superneurons.activations.store import ActivationStore, load_activations
from superneurons.constants import MANIFEST_NAME, SHARD_PATTERN
from superneurons.data import load_samples
from superneurons.errors import DataError, StoreError


class Killed(Exception):
    pass


@pytest.fixture
def samples(make_dataset, tmp_path):
    return load_samples(make_dataset(tmp_path / "data", 10))


def test_probe_writes_shards_and_manifest(tiny_llava, samples, tmp_path):
    out = tmp_path / "acts"
    store = probe(tiny_llava, samples, out, dtype="float32", shard_size=4, batch_size=3, progress=False)
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # the lock and check record stay
    assert files == [MANIFEST_NAME, SHARD_PATTERN.format(0), SHARD_PATTERN.format(1), SHARD_PATTERN.format(2)]
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["complete"] and m["num_samples"] == 10 and m["token"] == "first"
    assert m["ids"] == [s.id for s in samples] and m["labels"] == [s.label for s in samples]
    assert m["fingerprint"] == tiny_llava.fingerprint and m["prompt_template"] == tiny_llava.prompt_template
    assert m["layers"] == [0, 1, 2, 3] and m["dtype"] == "float32" and m["library_version"]
    assert [(s["start"], s["stop"]) for s in m["shards"]] == [(0, 4), (4, 8), (8, 10)]
    assert store.num_samples == len(store) == 10 and store.hidden_size == tiny_llava.hidden_size
    assert store.labels.tolist() == [s.y for s in samples] and store.ids == m["ids"]
    expected = capture(tiny_llava, samples, progress=False)
    torch.testing.assert_close(store.read(), expected)
    acts, labels, manifest = load_activations(out)
    torch.testing.assert_close(acts, expected)
    assert labels.dtype == torch.long and manifest["complete"]
    # layer subsets across shards, contiguous or not, and chunked streaming
    torch.testing.assert_close(store.read([1, 2]), expected[:, 1:3])
    torch.testing.assert_close(store.read([3, 0]), expected[:, [3, 0]])
    torch.testing.assert_close(load_activations(out, layers=range(2))[0], expected[:, :2])
    chunks = list(store.iter_layer_chunks(3))
    assert [c[0] for c in chunks] == [[0, 1, 2], [3]]
    torch.testing.assert_close(torch.cat([c[1] for c in chunks], dim=1), expected)
    with pytest.raises(StoreError, match="not in the store"):
        store.read([7])
    assert not list(out.glob("*.pkl")) and not list(out.glob(".*tmp*"))


def test_float16_default_and_layer_subset(tiny_llava, samples, tmp_path):
    store = probe(tiny_llava, samples, tmp_path / "a", layers=[0, 2], shard_size=8, progress=False)
    assert store.dtype == torch.float16 and store.layers == [0, 2]
    acts = store.read()
    assert acts.shape == (10, 2, tiny_llava.hidden_size) and acts.dtype == torch.float16
    expected = capture(tiny_llava, samples, layers=[0, 2], progress=False)
    torch.testing.assert_close(acts.float(), expected, atol=1e-2, rtol=1e-2)


def test_resume_after_kill_matches_uninterrupted(tiny_llava, samples, tmp_path, monkeypatch):
    ref = probe(tiny_llava, samples, tmp_path / "ref", dtype="float32", shard_size=3, progress=False)
    out = tmp_path / "run"

    def kill_after_two(i, path):
        if i == 1:
            raise Killed

    with pytest.raises(Killed):
        probe(tiny_llava, samples, out, dtype="float32", shard_size=3, progress=False, on_shard=kill_after_two)
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert not m["complete"] and len(m["shards"]) == 2
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore(out)
    (out / f".{SHARD_PATTERN.format(2)}.tmp-999").write_bytes(b"half a shard")  # a write cut short

    # the rerun captures only the missing samples
    import superneurons.activations.probing as cap

    seen: list[str] = []
    real = cap.capture_batches

    def spy(vlm, chunk, *a, **k):
        seen.extend(s.id for s in chunk)
        return real(vlm, chunk, *a, **k)

    monkeypatch.setattr(cap, "capture_batches", spy)
    store = probe(tiny_llava, samples, out, dtype="float32", shard_size=3, progress=False)
    assert seen == [s.id for s in samples[6:]]
    assert store.manifest["complete"] and store.ids == ref.ids
    assert [s["start"] for s in store.manifest["shards"]] == [0, 3, 6, 9]
    torch.testing.assert_close(store.read(), ref.read())
    assert not list(out.glob(".*tmp*"))
    seen.clear()
    probe(tiny_llava, samples, out, dtype="float32", shard_size=3, progress=False)  # complete: nothing to do
    assert seen == []


def test_shard_written_but_manifest_not_updated(tiny_llava, samples, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Killed):
        probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False,
              on_shard=lambda i, p: (_ for _ in ()).throw(Killed) if i == 0 else None)
    m = json.loads((out / MANIFEST_NAME).read_text())
    m["shards"], m["complete"] = [], False  # as if killed between the shard rename and the manifest write
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    store = probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False)
    torch.testing.assert_close(store.read(), capture(tiny_llava, samples, progress=False))


def test_mismatched_rerun_is_refused(tiny_llava, tiny_qwen2vl, samples, tmp_path):
    out = tmp_path / "acts"
    probe(tiny_llava, samples, out, shard_size=5, progress=False)
    with pytest.raises(StoreError, match="different model"):
        probe(tiny_qwen2vl, samples, out, shard_size=5, progress=False)
    with pytest.raises(StoreError, match="different token position"):
        probe(tiny_llava, samples, out, token="last", shard_size=5, progress=False)
    with pytest.raises(StoreError, match="different sample list"):
        probe(tiny_llava, samples[:8], out, shard_size=5, progress=False)
    with pytest.raises(StoreError, match="different layer set"):
        probe(tiny_llava, samples, out, layers=[0], shard_size=5, progress=False)
    m = json.loads((out / MANIFEST_NAME).read_text())
    sketch = m["fingerprint"]["weights"]
    m["fingerprint"]["weights"] = format(int(sketch, 16) ^ int("f" * 16, 16), f"0{len(sketch)}x")  # retrained
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(StoreError, match="different model.*weights"):
        probe(tiny_llava, samples, out, shard_size=5, progress=False)
    m["fingerprint"].pop("weights")  # a store written before fingerprints had a weight sketch resumes
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    probe(tiny_llava, samples, out, shard_size=5, progress=False)
    m["prompt_template"] = "Q: {question} A:"
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(StoreError, match="different prompt template"):
        probe(tiny_llava, samples, out, shard_size=5, progress=False)


def test_skip_bad_is_reported(tiny_llava, samples, tmp_path):
    from pathlib import Path

    Path(samples[1].image).write_bytes(b"not a png")
    Path(samples[4].image).unlink()
    with pytest.raises(DataError, match=samples[1].id):
        probe(tiny_llava, samples, tmp_path / "a", progress=False)
    store = probe(tiny_llava, samples, tmp_path / "b", skip_bad=True, progress=False)
    assert store.num_samples == 8 and samples[1].id not in store.ids
    skipped = store.manifest["skipped"]
    assert [s["id"] for s in skipped] == [samples[1].id, samples[4].id]
    assert "cannot be read" in skipped[0]["reason"] and "does not exist" in skipped[1]["reason"]


def test_one_class_set_and_bad_arguments(tiny_llava, samples, tmp_path):
    yes_only = [s for s in samples if s.label == "yes"]
    with pytest.raises(DataError, match="both yes and no"):
        probe(tiny_llava, yes_only, tmp_path / "a", progress=False)
    with pytest.raises(StoreError, match="dtype"):
        probe(tiny_llava, samples, tmp_path / "b", dtype="int8", progress=False)
    with pytest.raises(StoreError, match="do not exist"):
        probe(tiny_llava, samples, tmp_path / "c", layers=[9], progress=False)


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{broken")
    with pytest.raises(StoreError, match="not valid JSON"):
        ActivationStore(tmp_path)


def _flip_last_bytes(path, n=16):
    data = bytearray(path.read_bytes())
    data[-n:] = bytes(b ^ 0xFF for b in data[-n:])
    path.write_bytes(bytes(data))


def test_shards_are_checked_against_the_manifest_when_read(tiny_llava, samples, tmp_path):
    out = tmp_path / "acts"
    probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False)
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert len(m["sample_digests"]) == 10 and all(len(d) == 32 for d in m["sample_digests"])
    assert all(len(s["checksums"]) == 4 and s["identity"] for s in m["shards"])
    good = ActivationStore(out).read()
    shard = out / SHARD_PATTERN.format(1)
    original = shard.read_bytes()
    _flip_last_bytes(shard)  # the data bytes of the last layer of shard 1
    with pytest.raises(StoreError, match=f"{shard}.*layer position 3 do not match.*probe command again"):
        ActivationStore(out).read()
    torch.testing.assert_close(ActivationStore(out).read([0, 1, 2]), good[:, :3])  # only the bytes read count
    assert not torch.equal(ActivationStore(out, verify=False).read(), good)  # the explicit opt-out
    shard.write_bytes(original)
    first, second = out / SHARD_PATTERN.format(0), shard
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)  # two shards swapped
    with pytest.raises(StoreError, match=f"{first} holds samples 4..7.*the manifest says 0..3"):
        ActivationStore(out, verify=False).read()
    first.write_bytes(a)
    second.write_bytes(b)
    m2 = dict(m, sample_digests=["0" * 32] + m["sample_digests"][1:])  # the manifest lists other samples
    (out / MANIFEST_NAME).write_text(json.dumps(m2))
    with pytest.raises(StoreError, match=f"{first} holds activations of other samples"):
        ActivationStore(out).read()
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    shard.write_bytes(original[: len(original) // 2])  # truncated
    with pytest.raises(StoreError, match=f"{shard}: cannot be read as a shard.*probe command again"):
        ActivationStore(out).read()
    store = probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False)  # the repair
    torch.testing.assert_close(store.read(), good)


def test_resume_recomputes_changed_samples_or_refuses(tiny_llava, samples, tmp_path):
    from PIL import Image

    out = tmp_path / "acts"
    probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False)
    kept = {i: (out / SHARD_PATTERN.format(i)).read_bytes() for i in range(3)}
    samples[1].question = "Is there a zebra in the image ? Answer with yes or no ."
    Image.new("RGB", (24, 24), (0, 200, 0)).save(samples[9].image)
    before = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    with pytest.raises(StoreError, match=r"2 sample\(s\) changed.*'s0001', 's0009'.*without --refuse-changed"):
        probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False, refuse_changed=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == before
    notes: list[str] = []
    store = probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False, notify=notes.append)
    assert len(notes) == 1 and "'s0001', 's0009'" in notes[0] and "recomputing" in notes[0]
    torch.testing.assert_close(store.read(), capture(tiny_llava, samples, progress=False))
    assert (out / SHARD_PATTERN.format(1)).read_bytes() == kept[1]  # untouched samples: shard reused as is
    assert (out / SHARD_PATTERN.format(0)).read_bytes() != kept[0]
    with pytest.warns(UserWarning, match="recomputing"):  # the default notice is a warning
        samples[4].question = "Is there a cow ?"
        probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False)


def test_in_memory_images_are_identified_by_their_pixels():
    from PIL import Image

    from superneurons.activations.identity import sample_digests
    from superneurons.data import Sample

    red, blue = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))
    a, b, c = sample_digests([Sample("x", red, "q?", "yes"), Sample("x", blue, "q?", "yes"),
                              Sample("x", Image.new("RGB", (4, 4), (255, 0, 0)), "q?", "yes")])
    assert a != b and a == c
    assert sample_digests([Sample("x", red, "q?", "no")]) != [a]


def test_stores_from_before_content_checks(tiny_llava, samples, tmp_path):
    out = tmp_path / "acts"
    good = probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False).read()
    m = json.loads((out / MANIFEST_NAME).read_text())
    del m["sample_digests"]
    for s in m["shards"]:
        del s["checksums"], s["identity"]
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.warns(UserWarning, match="older superneurons without content checks.*probe again"):
        store = ActivationStore(out)
    torch.testing.assert_close(store.read(), good)  # still opens, checks skipped with a note
    with pytest.raises(StoreError, match="older superneurons.*cannot tell whether they changed"):
        probe(tiny_llava, samples, out, dtype="float32", shard_size=4, progress=False)


def test_one_writer_per_store_folder(tiny_llava, samples, tmp_path):
    from superneurons.errors import InUseError
    from superneurons.utils.locking import output_lock

    out = tmp_path / "acts"
    out.mkdir()
    tmp = out / f".{SHARD_PATTERN.format(0)}.tmp-1"  # another live writer's temporary file
    tmp.write_bytes(b"half a shard")
    with output_lock(out), pytest.raises(InUseError, match=f"in use by pid {os.getpid()}"):
        probe(tiny_llava, samples, out, progress=False)
    assert tmp.read_bytes() == b"half a shard" and not (out / MANIFEST_NAME).exists()
    probe(tiny_llava, samples, out, progress=False)  # the lock is free: this run cleans up and writes
    assert not tmp.exists()
