"""utils/prefetch.py and `prepared_batches`: overlapped preparation, same values and order as the serial loop."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest
import torch

from superneurons.activations import capture
from superneurons.activations.prefill import batches, prepared_batches, run_prefill
from superneurons.data import Sample, load_samples
from superneurons.errors import DataError
from superneurons.evaluation.bench import timing_classifier
from superneurons.inference import predict
from superneurons.utils.prefetch import THREAD_PREFIX, prefetched


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture
def samples(tmp_path, make_dataset):
    return load_samples(make_dataset(tmp_path, 7))


def test_same_values_and_order_with_the_work_in_one_worker_thread():
    where: list[str] = []

    def slow_square(x: int) -> int:
        time.sleep(0.01 * (x % 3))  # uneven work must not reorder results
        where.append(threading.current_thread().name)
        return x * x

    assert list(prefetched(slow_square, range(9))) == [x * x for x in range(9)]
    assert len(where) == 9 and all(n.startswith(THREAD_PREFIX) for n in where)
    assert len(set(where)) == 1  # one worker
    where.clear()
    assert list(prefetched(slow_square, range(4), enabled=False)) == [0, 1, 4, 9]
    assert where == [threading.current_thread().name] * 4  # serial: no thread
    where.clear()
    assert list(prefetched(slow_square, [5])) == [25] and where == [threading.current_thread().name]
    assert list(prefetched(slow_square, [])) == []
    assert not _workers()


def test_the_next_item_is_prepared_while_the_caller_works():
    started = {i: threading.Event() for i in range(3)}

    def prep(x: int) -> int:
        started[x].set()
        return x

    for x in prefetched(prep, range(3)):
        if x < 2:  # the caller's "forward" of item x waits until item x + 1 is being prepared
            assert started[x + 1].wait(timeout=30), f"item {x + 1} was not prepared during the work on item {x}"


def test_a_worker_error_surfaces_unchanged_in_the_caller_and_stops_preparation():
    done: list[int] = []

    def prep(x: int) -> int:
        if x == 2:
            raise DataError(f"sample {x}: image file 'x.png' cannot be read")
        done.append(x)
        return x

    got: list[int] = []
    with pytest.raises(DataError, match=r"^sample 2: image file 'x.png' cannot be read$") as info:
        for x in prefetched(prep, range(6)):
            got.append(x)
    assert got == [0, 1] and done == [0, 1]  # nothing after the failing item was prepared
    assert any(f.name == "prep" for f in info.traceback)  # the worker's own frame is in the traceback
    assert not _workers()


@pytest.mark.parametrize("how", ["break", "raise", "close"])
def test_leaving_early_leaves_no_thread_behind(how):
    def prep(x: int) -> int:
        time.sleep(0.02)
        return x

    it = prefetched(prep, range(50))
    if how == "close":
        assert next(it) == 0
        it.close()
    elif how == "break":
        for x in it:
            if x == 1:
                break
        it.close()
    else:
        with pytest.raises(RuntimeError, match="forward failed"), closing(it):
            for _ in it:
                raise RuntimeError("forward failed")
    assert not _workers()


def test_prepared_batches_equal_the_serial_preparation(tiny_llava, samples):
    serial = [tiny_llava.prepare(chunk) for chunk in batches(samples, 3)]
    with closing(prepared_batches(tiny_llava, samples, 3)) as ready:
        got = list(ready)
    assert [list(c) for c, _ in got] == [list(c) for c in batches(samples, 3)]
    assert len(got) == len(serial) == 3
    for (_, b), ref in zip(got, serial, strict=True):
        assert b.keys() == ref.keys() and all(torch.equal(b[k], ref[k]) for k in ref)
    with pytest.raises(DataError, match="batch_size=0"):
        list(prepared_batches(tiny_llava, samples, 0))


def test_capture_and_predict_equal_the_serial_path(tiny_llava, samples):
    clf = timing_classifier(tiny_llava, 1, k=6)
    acts = capture(tiny_llava, samples, layers=[0, 1], exit_layer=1, batch_size=2, progress=False)
    ref = capture(tiny_llava, samples, layers=[0, 1], exit_layer=1, batch_size=2, progress=False, prefetch=False)
    assert torch.equal(acts, ref)
    serial = torch.cat([clf.sns.gather(run_prefill(tiny_llava, tiny_llava.prepare(c), clf.layers_needed, 1))
                        for c in batches(samples, 2)]).float()
    out = predict(clf, tiny_llava, samples, batch_size=2)
    assert torch.equal(out.acts, serial) and torch.equal(out.preds, clf.predict_from_acts(serial).preds)
    assert not _workers()


def test_a_bad_image_in_a_later_batch_names_the_sample(tiny_llava, samples, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    data = [*samples[:4], Sample(id="q-broken", image=bad, question="Is there a cat?", label="yes")]
    with pytest.raises(DataError, match="q-broken"):
        capture(tiny_llava, data, exit_layer=1, batch_size=2, progress=False)
    assert not _workers()
