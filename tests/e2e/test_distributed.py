"""`superneurons probe` under a real 2-process torchrun (gloo, CPU): equals a single process; a
rank killed mid-run resumes after its last whole shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from superneurons.activations.probing import probe
from superneurons.activations.store import ActivationStore
from superneurons.constants import MANIFEST_NAME
from superneurons.data import load_samples

ARGS = ["--dtype", "float32", "--shard-size", "2", "--batch-size", "2", "--device", "cpu", "--exit-layer", "2"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="error")
    return env


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)


def _cli(model, data, out) -> subprocess.CompletedProcess:
    return _torchrun("-m", "superneurons", "probe", "--model", str(model), "--data", str(data), "--out", str(out),
                     *ARGS)


@pytest.fixture
def data(make_dataset, tmp_path):
    return make_dataset(tmp_path / "data", 9)  # odd: the ranks get 5 and 4 samples


@pytest.fixture
def reference(tiny_llava, data, tmp_path):
    """The same probe in this single process."""
    return probe(tiny_llava, load_samples(data), tmp_path / "single", dtype="float32", shard_size=2, batch_size=2,
                 exit_layer=2, progress=False)


def _assert_same(store: ActivationStore, ref: ActivationStore) -> None:
    assert store.ids == ref.ids and store.labels.tolist() == ref.labels.tolist()
    assert store.layers == ref.layers == [0, 1, 2] and store.fingerprint == ref.fingerprint
    assert store.manifest["prompt_template"] == ref.manifest["prompt_template"]
    torch.testing.assert_close(store.read(), ref.read(), rtol=1e-5, atol=1e-5)


def test_torchrun_probe_equals_single_process(tiny_llava_dir, data, reference, tmp_path):
    out = tmp_path / "dist"
    res = _cli(tiny_llava_dir, data, out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "9 samples x 3 layers x 64" in " ".join(res.stdout.split())  # printed once, by rank 0
    assert res.stdout.count("wrote") == 1
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["complete"] and m["world_size"] == 2
    assert [(r["inputs"], r["num_samples"]) for r in m["ranks"]] == [([0, 5], 5), ([5, 9], 4)]
    assert sorted(p.name for p in (out / "rank-00000").glob("shard-*")) == [f"shard-0000{i}.safetensors"
                                                                          for i in range(3)]
    _assert_same(ActivationStore(out), reference)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from superneurons.data import load_samples
    from superneurons.models import load_model
    from superneurons.activations.probing import probe

    model, data, out = sys.argv[1:4]

    def on_shard(index, path):  # rank 1 dies right after committing its first shard
        if os.environ["RANK"] == "1" and index == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    vlm = load_model(model, dtype="float32", device="cpu")
    probe(vlm, load_samples(data), out, dtype="float32", shard_size=2, batch_size=2, exit_layer=2,
          progress=False, on_shard=on_shard)
""")


@pytest.mark.slow
def test_kill_and_resume_per_rank(tiny_llava_dir, data, reference, tmp_path):
    out = tmp_path / "dist"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    res = _torchrun(str(script), str(tiny_llava_dir), str(data), str(out))
    assert res.returncode != 0  # the job failed: rank 1 was killed
    rank1 = out / "rank-00001"
    assert sorted(p.name for p in rank1.glob("shard-*")) == ["shard-00000.safetensors"]
    assert not json.loads((rank1 / MANIFEST_NAME).read_text())["complete"]
    assert not json.loads((out / MANIFEST_NAME).read_text())["complete"]  # no merged result yet
    with pytest.raises(Exception, match="incomplete"):
        ActivationStore(out)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("rank-*/shard-*.safetensors")}
    assert len(kept) >= 1

    res = _cli(tiny_llava_dir, data, out)  # the same job again, through the CLI
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # whole shards were not recomputed
    assert sorted(p.name for p in rank1.glob("shard-*")) == [f"shard-0000{i}.safetensors" for i in range(2)]
    _assert_same(ActivationStore(out), reference)
