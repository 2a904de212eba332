"""data/samples.py: parsing the standard layout, and every bad input naming its record and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from superneurons.data import (
    Sample,
    balanced_sample,
    load_samples,
    parse_label,
    validate_samples,
    write_samples,
)
from superneurons.errors import DataError


def _write_jsonl(path: Path, records: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(path)
    return path


def test_load_jsonl_resolves_relative_images_and_labels(make_dataset, tmp_path):
    path = make_dataset(tmp_path, 6)
    samples = load_samples(path)
    assert [s.id for s in samples] == [f"s{i:04d}" for i in range(6)]
    assert [s.label for s in samples] == ["yes", "no"] * 3 and [s.y for s in samples] == [1, 0] * 3
    assert all(Path(s.image).parent == tmp_path / "images" for s in samples)  # relative to the file
    assert samples[0].load_image().mode == "RGB"
    good, skipped = validate_samples(samples, require_both_classes=True)
    assert len(good) == 6 and skipped == []


def test_json_list_and_label_spellings(tmp_path):
    _image(tmp_path / "a.png")
    recs = [{"id": i, "image": "a.png", "question": "q ?", "label": lab}
            for i, lab in enumerate(["YES", "no", 1, 0, "True", "false", True, False, " Yes "])]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    samples = load_samples(tmp_path / "d.json")
    assert [s.label for s in samples] == ["yes", "no", "yes", "no", "yes", "no", "yes", "no", "yes"]
    assert samples[0].id == "0"  # ids are strings
    assert parse_label("1", "x") == "yes"


def test_bad_label_names_line_and_id(tmp_path):
    _image(tmp_path / "a.png")
    path = _write_jsonl(tmp_path / "d.jsonl", [
        {"id": "q1", "image": "a.png", "question": "q", "label": "yes"},
        {"id": "q42", "image": "a.png", "question": "q", "label": "maybe"},
    ])
    with pytest.raises(DataError, match=r"line 2 \(id q42\): label 'maybe' is not yes/no; use yes/no"):
        load_samples(path)


def test_missing_image_names_sample(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"id": "q7", "image": "nope.png", "question": "q", "label": "no"}])
    samples = load_samples(path)
    with pytest.raises(DataError, match=r"sample 'q7'.*does not exist.*--skip-bad"):
        validate_samples(samples)


def test_corrupt_image_names_sample(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    path = _write_jsonl(tmp_path / "d.jsonl", [{"id": "q8", "image": "bad.png", "question": "q", "label": "no"}])
    with pytest.raises(DataError, match=r"sample 'q8'.*cannot be read as an image"):
        validate_samples(load_samples(path))


def test_skip_bad_reports_what_it_skipped(make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 6))
    Path(samples[2].image).unlink()
    Path(samples[3].image).write_bytes(b"junk")
    good, skipped = validate_samples(samples, skip_bad=True)
    assert [s.id for s in good] == ["s0000", "s0001", "s0004", "s0005"]
    assert [sid for sid, _ in skipped] == ["s0002", "s0003"]
    assert "does not exist" in skipped[0][1] and "cannot be read" in skipped[1][1]


def test_empty_set(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="holds no samples"):
        load_samples(tmp_path / "empty.jsonl")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(DataError, match="holds no samples"):
        load_samples(tmp_path / "empty.json")
    with pytest.raises(DataError, match="no usable samples"):
        validate_samples([])
    bad = [Sample("z", tmp_path / "none.png", "q", "yes")]
    with pytest.raises(DataError, match=r"no usable samples \(1 skipped as bad\)"):
        validate_samples(bad, skip_bad=True)


def test_one_class_set(make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 4, labels=["no"] * 4))
    with pytest.raises(DataError, match=r"only label\(s\) no .*'s0000'.*both yes and no"):
        validate_samples(samples, require_both_classes=True)
    validate_samples(samples)  # fine when not probing
    with pytest.raises(DataError, match="0 yes and 4 no"):
        balanced_sample(samples, 4)


def test_malformed_records_name_the_line(tmp_path):
    _image(tmp_path / "a.png")
    path = _write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "image": "a.png", "question": "q", "label": "yes"}, "{oops"])
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        load_samples(path)
    path = _write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "question": "q", "label": "yes"}])
    with pytest.raises(DataError, match="line 1: missing field.*image"):
        load_samples(path)
    path = _write_jsonl(tmp_path / "d.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        load_samples(path)
    rec = {"id": "a", "image": "a.png", "question": "q", "label": "yes"}
    with pytest.raises(DataError, match=r"duplicate sample ids \['a'\]"):
        load_samples(_write_jsonl(tmp_path / "d.jsonl", [rec, rec]))
    with pytest.raises(DataError, match=r"\['a'\] have no label"):
        load_samples(_write_jsonl(tmp_path / "d.jsonl", [dict(rec, label=None)]))
    assert load_samples(tmp_path / "d.jsonl", require_labels=False)[0].label is None
    with pytest.raises(DataError, match="does not exist"):
        load_samples(tmp_path / "missing.jsonl")


def test_unlabelled_sample_y_raises():
    with pytest.raises(DataError, match="no label"):
        _ = Sample("u", "x.png", "q").y


def test_balanced_sample_is_balanced_and_seeded(make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 20, labels=["yes"] * 14 + ["no"] * 6))
    picked = balanced_sample(samples, 10, seed=3)
    assert len(picked) == 10 and sum(s.y for s in picked) == 5
    assert [s.id for s in picked] == [s.id for s in balanced_sample(samples, 10, seed=3)]
    assert [s.id for s in picked] != [s.id for s in balanced_sample(samples, 10, seed=4)]
    assert len(balanced_sample(samples, None)) == 12 and len(balanced_sample(samples, 100)) == 12
    with pytest.raises(DataError, match="n >= 2"):
        balanced_sample(samples, 1)


def test_write_samples_round_trip(make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 4))
    samples[0].meta = {"category": "dog"}
    out = write_samples(samples, tmp_path / "copy.jsonl")
    assert json.loads(out.read_text().splitlines()[0])["image"].startswith("images/")
    again = load_samples(out)
    assert [(s.id, s.label, s.question, s.meta) for s in again] == [(s.id, s.label, s.question, s.meta) for s in samples]


def test_written_paths_outside_the_file_folder_still_load_from_another_cwd(tmp_path, monkeypatch):
    from PIL import Image

    from superneurons.data.samples import Sample, load_samples, write_samples

    (tmp_path / "run" / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "run" / "images" / "a.png")
    (tmp_path / "run" / "study").mkdir()
    monkeypatch.chdir(tmp_path)  # a relative --out, as in `superneurons demo --out demo_out`
    path = write_samples([Sample("a", Path("run/images/a.png"), "q?", "yes")], Path("run/study/probe.jsonl"))
    monkeypatch.chdir(tmp_path / "run")
    (loaded,) = load_samples(tmp_path / "run" / "study" / "probe.jsonl")
    assert Path(loaded.image).resolve() == (tmp_path / "run" / "images" / "a.png").resolve()
    assert (tmp_path / path).read_text().count("../images/a.png") == 1
