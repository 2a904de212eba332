"""Bad inputs get a named error, never a traceback: data file encodings, invalid characters, numeric
options (CLI and config objects), error text that looks like rich markup, and oversized images
(checked from the header, before anything is decoded or the model loads)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from superneurons.config import CaptureConfig, InferConfig, ScoreConfig, SelectConfig
from superneurons.constants import MAX_PIXELS
from superneurons.data.samples import Sample, balanced_sample, load_samples, validate_samples
from superneurons.errors import ConfigError, DataError

from .predict_fixtures import make_classifier, records, with_image, write_records


@pytest.fixture(scope="module")
def env(tiny_llava, tiny_llava_dir, tmp_path_factory):
    return tiny_llava_dir, make_classifier(tiny_llava, tmp_path_factory.mktemp("inputs"))


def _predict(run_cli, env, data, out, *extra):
    model, clf = env
    return run_cli("predict", "-c", clf, "-m", model, "-d", data, "-o", out, "--device", "cpu", *extra)


def _not_loaded(res):
    assert "loading" not in res.stderr, "the error came after the model was loaded"


# ---- encodings and characters ---------------------------------------------------------------
def test_latin1_data_file_names_the_line_and_byte(make_dataset, tmp_path, env, run_cli, assert_named_error):
    recs = records(make_dataset(tmp_path, 6))
    recs[2]["question"] = "Is there a caf\u00e9 ? Answer with yes or no ."
    data = write_records(tmp_path / "latin1.jsonl", recs, encoding="latin-1", ensure_ascii=False)
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl")
    assert_named_error(res, "latin1.jsonl line 3", "byte", "UTF-8")
    _not_loaded(res)


def test_utf16_data_file_is_named(make_dataset, tmp_path, env, run_cli, assert_named_error):
    data = write_records(tmp_path / "u16.jsonl", records(make_dataset(tmp_path, 6)), encoding="utf-16")
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl")
    assert_named_error(res, "u16.jsonl", "UTF-16", "UTF-8")


def test_a_utf8_bom_is_accepted(make_dataset, tmp_path):
    plain = make_dataset(tmp_path, 6)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert [s.id for s in load_samples(bom)] == [s.id for s in load_samples(plain)]


def test_a_lone_surrogate_names_the_record_before_the_model_loads(make_dataset, tmp_path, env, run_cli,
                                                                   assert_named_error):
    data = make_dataset(tmp_path, 6)
    lines = data.read_text().splitlines()
    lines[4] = lines[4].replace("Is there", "Is there \\ud83d")
    data.write_text("\n".join(lines) + "\n")
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl")
    assert_named_error(res, "line 5", "s0004", "question", "surrogate")
    _not_loaded(res)
    bad = Sample("q1", tmp_path / "images" / "data-0000.png", "a \udc80 b")
    with pytest.raises(DataError, match="'q1'.*surrogate"):  # samples built in code too
        validate_samples([bad])


# ---- numeric options ------------------------------------------------------------------------
@pytest.mark.parametrize("args,option", [
    (["predict", "--batch-size", "0"], "--batch-size"),
    (["predict", "--max-pixels", "0"], "--max-pixels"),
    (["evaluate", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["evaluate", "--limit", "0"], "--limit"),
    (["probe", "--balanced", "-4"], "--balanced"),
    (["probe", "--max-new-tokens", "0", "--token", "last"], "--max-new-tokens"),
    (["probe", "--shard-size", "0"], "--shard-size"),
    (["select", "--top-k", "0"], "--top-k"),
    (["select", "--snt", "92"], "--snt"),
    (["cascade-sweep", "--repeats", "0"], "--repeats"),
])
def test_numeric_options_are_checked_by_the_cli(args, option, tmp_path, run_cli, assert_named_error):
    cmd, *rest = args
    common = {"predict": ["-c", "x", "-m", "x", "-d", "x", "-o", str(tmp_path / "p")],
              "evaluate": ["-c", "x", "-m", "x", "-d", "x"], "probe": ["-m", "x", "-d", "x", "-o", str(tmp_path / "a")],
              "select": ["-a", "x", "-o", str(tmp_path / "c")], "cascade-sweep": ["-c", "x", "-m", "x", "-d", "x"]}[cmd]
    res = run_cli(cmd, *common, *rest)
    assert res.returncode == 2
    assert_named_error(res, option)


@pytest.mark.parametrize("make,option", [
    (lambda: CaptureConfig(batch_size=0), "batch_size"),
    (lambda: CaptureConfig(max_pixels=0), "max_pixels"),
    (lambda: CaptureConfig(exit_layer="3"), "exit_layer"),
    (lambda: CaptureConfig(max_new_tokens=0), "max_new_tokens"),
    (lambda: ScoreConfig(quantiles=[0.5, 1.5]), "quantiles"),
    (lambda: ScoreConfig(chunk_layers=0), "chunk_layers"),
    (lambda: SelectConfig(top_k=0), "top_k"),
    (lambda: InferConfig(batch_size=0), "batch_size"),
    (lambda: InferConfig(max_pixels=-1), "max_pixels"),
])
def test_config_objects_name_the_bad_option(make, option):
    with pytest.raises(ConfigError, match=option):
        make()


def test_balanced_sample_refuses_a_negative_size(make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 6))
    with pytest.raises(DataError, match="n=-4"):
        balanced_sample(samples, -4)


def test_evaluate_refuses_zero_new_tokens(tiny_llava, env, make_dataset, tmp_path):
    from superneurons.evaluation.compare import evaluate
    from superneurons.inference.classifier import SuperNeuronClassifier

    clf = SuperNeuronClassifier.load(env[1])
    with pytest.raises(ConfigError, match="max_new_tokens"):
        evaluate(clf, tiny_llava, load_samples(make_dataset(tmp_path, 4)), max_new_tokens=0)


# ---- error text printed literally -----------------------------------------------------------
@pytest.mark.parametrize("folder", ["x[/bold]", "y[/]z", "[red]w"])
def test_error_text_with_markup_is_printed_literally(folder, tmp_path, env, run_cli, assert_named_error):
    missing = tmp_path / folder / "d.jsonl"
    res = _predict(run_cli, env, missing, tmp_path / "p.jsonl")
    assert_named_error(res, str(missing), "does not exist")


# ---- image size -----------------------------------------------------------------------------
def _big_png(path, side, mode="1"):
    Image.new(mode, (side, side), 1).save(path)  # one colour: a few KB on disk, side^2 pixels
    return path


def test_an_oversized_image_is_refused_from_its_header(make_dataset, tmp_path, env, run_cli, assert_named_error):
    data = make_dataset(tmp_path, 6)
    _big_png(tmp_path / "images" / "big.png", 8000)
    with_image(data, 3, "images/big.png")
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl")
    assert_named_error(res, "s0003", "big.png", "8000x8000", "50 MP", "--max-pixels")
    _not_loaded(res)
    assert not (tmp_path / "p.jsonl").exists()
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl", "--skip-bad")  # skipped and listed
    assert res.returncode == 0, res.stderr
    assert "skipped s0003" in " ".join(res.stderr.split())
    assert [r["id"] for r in records(tmp_path / "p.jsonl")] == ["s0000", "s0001", "s0002", "s0004", "s0005"]


def test_max_pixels_is_configurable(make_dataset, tmp_path, env, run_cli, assert_named_error):
    data = make_dataset(tmp_path, 4)  # 24 x 24 = 576 pixels each
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl", "--max-pixels", "500")
    assert_named_error(res, "s0000", "24x24", "--max-pixels")
    res = _predict(run_cli, env, data, tmp_path / "p.jsonl", "--max-pixels", "576")
    assert res.returncode == 0, res.stderr


def test_a_decompression_bomb_gets_the_named_error(tmp_path):
    s = Sample("bomb", _big_png(tmp_path / "bomb.png", 20000), "q")  # 400 MP: over PIL's own bomb limit
    for limit in (MAX_PIXELS, 10**12):
        with pytest.raises(DataError, match="'bomb'.*(too large|over the limit)"):
            validate_samples([s], max_pixels=limit)


def test_validation_reads_headers_and_each_image_is_decoded_once(tiny_llava, make_dataset, tmp_path, monkeypatch):
    from PIL import ImageFile

    from superneurons.activations.probing import probe

    calls: list[str] = []
    load = ImageFile.ImageFile.load
    def counting(im):  # a decode is a load() with tiles left to read (a later load() is a no-op)
        if im.tile:
            calls.append(im.filename)
        return load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    samples = load_samples(make_dataset(tmp_path, 6))
    validate_samples(samples)
    assert calls == []  # header only
    probe(tiny_llava, samples, tmp_path / "acts", dtype="float32", progress=False)
    assert sorted(calls) == sorted(str(s.image) for s in samples)  # each decoded exactly once


def test_predict_data_in_json_list_with_a_bom(make_dataset, tmp_path):
    recs = records(make_dataset(tmp_path, 4))
    path = tmp_path / "d.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(recs).encode())
    assert len(load_samples(path)) == 4
