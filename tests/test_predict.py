"""btk predict: batches that span files give the one-by-one answers; rows name their inputs as
given; CSV and JSON-lines files written as rows come, never half-written; bad input is one line,
found before the model loads; unreadable files are listed and the rest predicted."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.phantoms import make_phantom
from btk.plugins import get_host
from btk.runs import Run, load_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """``(run_dir, data)``: a one-epoch small-cnn run (the fast recipe's crop and intensity
    normalisation, 32 px, grayscale) on 8 phantom PNGs of two classes in ``data``."""
    root = tmp_path_factory.mktemp("predict")
    data = root / "data"
    for k, label in enumerate(("glioma_tumor", "no_tumor")):
        (data / label).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(data / label / f"scan{i}.png"), make_phantom(label, np.random.default_rng([k, i]), 48))
    result = CliRunner().invoke(cli, ["run", "--data", str(data), "--model", "small-cnn", "--image-size", "32",
                                      "--channels", "1", "--epochs", "1", "--duplicate-threshold", "0",
                                      "--out", str(root / "runs"), "--reporter", "json"])
    assert result.exit_code == 0, result.output
    return next((root / "runs").iterdir()), data


def _predict(*args: str) -> tuple[object, list[str]]:
    result = CliRunner().invoke(cli, ["predict", *args])
    return result, [line for line in result.output.splitlines() if line.strip()]


def _assert_one_line_error(result, lines, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output


def _stream(run: Run, paths: list[str], **kwargs) -> list:
    from btk.predict import predict_stream
    from btk.predict_inputs import gather_inputs

    return list(predict_stream(run, gather_inputs(paths, get_host(), run.config["recipe"]), **kwargs))


def _no_model_load(monkeypatch) -> None:
    def refuse(self):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(Run, "load_model", refuse)


def test_batches_across_files_give_the_one_by_one_probabilities(tiny, monkeypatch):
    from btk import predict as predict_module
    from btk.dataset import load_dataset
    from btk.training import predict as keras_predict
    from btk.types import ReadOptions

    run_dir, data = tiny
    run = load_run(run_dir)
    files = [str(p) for p in sorted(data.glob("*/*.png"))][:5]
    one_by_one = [_stream(run, [f])[0] for f in files]
    calls: list[int] = []
    real = predict_module.predict_batches
    monkeypatch.setattr(predict_module, "predict_batches",
                        lambda m, x, s, **kw: calls.append(len(x)) or real(m, x, s, **kw))
    batched = _stream(run, files, batch_size=2)
    assert calls == [2, 2, 2]  # one model call per batch of two; the last padded to the traced shape
    in_one = _stream(run, files)
    assert [p.path for p in batched] == [p.path for p in in_one] == files
    for a, b, c in zip(one_by_one, batched, in_one):
        for cls in run.classes:
            assert abs(a.probabilities[cls] - b.probabilities[cls]) < 1e-6
            assert abs(a.probabilities[cls] - c.probabilities[cls]) < 1e-6
    # and as the Keras predict loop of training and evaluation gives them (calibrated) for the images read
    # as a dataset
    recipe = run.config["recipe"]
    dataset = load_dataset(get_host().readers.get("folder"), data,
                           ReadOptions(recipe["image_size"], recipe["channels"], crop=recipe["crop"]), cache=False)
    raw = keras_predict(run.load_model(), dataset.images, recipe["scale"], intensity=recipe["intensity"])
    expected = run.calibrated(raw)  # with the run's temperature; the top class is the model's
    assert (expected.argmax(axis=1) == raw.argmax(axis=1)).all()
    by_name = {os.path.join(str(data), s): p for s, p in zip(dataset.sources, expected)}
    for p in in_one:
        assert np.allclose([p.probabilities[c] for c in run.classes], by_name[p.path], atol=1e-6)


def test_rows_name_inputs_as_given_and_tell_same_names_apart(tiny, tmp_path, monkeypatch):
    run_dir, data = tiny
    for folder in ("ext/a", "ext/b/deeper", "flat"):
        (tmp_path / folder).mkdir(parents=True)
    scan = data / "no_tumor" / "scan0.png"
    for target in ("ext/a/x.png", "ext/b/deeper/x.png", "flat/x.png", "flat/y.PNG", "one.png"):
        shutil.copy(scan, tmp_path / target)
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    result, _ = _predict(str(run_dir), "ext", "flat/", "one.png", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["path"] for r in rows] == ["ext/a/x.png", "ext/b/deeper/x.png", "flat/x.png", "flat/y.PNG", "one.png"]
    assert all(r["slice"] is None and r["aggregated_over"] is None for r in rows)  # 2D images: no mean row
    assert len({json.dumps(r["probabilities"]) for r in rows}) == 1  # the same image everywhere


def test_out_csv_and_jsonl_hold_every_row(tiny, tmp_path):
    run_dir, data = tiny
    classes = load_run(run_dir).classes
    for name in ("rows.csv", "rows.jsonl"):
        result, _ = _predict(str(run_dir), str(data), "--out", str(tmp_path / name), "--batch-size", "3")
        assert result.exit_code == 0, result.output
        assert f"8rowswrittento{tmp_path / name}" in "".join(result.output.split())  # rich may wrap the line
        assert not (tmp_path / f"{name}.partial").exists()
    with open(tmp_path / "rows.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["path", "slice", "predicted", *[f"p_{c}" for c in classes]]
    lines = (tmp_path / "rows.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(table) == len(records) == 8
    for row, record in zip(table, records):
        assert row["path"] == record["path"] and row["path"].startswith(str(data) + "/")
        assert row["slice"] == "" and record["slice"] is None
        probs = [float(row[f"p_{c}"]) for c in classes]
        assert abs(sum(probs) - 1) < 1e-5 and row["predicted"] == classes[int(np.argmax(probs))]
        assert np.allclose(probs, [record["probabilities"][c] for c in classes])


def test_a_volume_gets_a_row_per_slice_and_its_mean(tiny, tmp_path):
    import nibabel as nib

    run_dir, data = tiny
    slices = [make_phantom("glioma_tumor", np.random.default_rng(s), 48) for s in range(5)]
    volume = np.stack([np.flipud(s).T for s in slices], axis=-1)  # RAS+: slice_stack shows each as drawn
    nib.save(nib.Nifti1Image(volume.astype(np.uint8), np.eye(4)), str(tmp_path / "head.nii.gz"))
    image = str(data / "no_tumor" / "scan1.png")
    result, _ = _predict(str(run_dir), str(tmp_path / "head.nii.gz"), image, "-R", "clip=none", "--batch-size", "3",
                         "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["slice"], r["aggregated_over"]) for r in rows] == [(0, None), (1, None), (2, None), (3, None),
                                                                  (4, None), (None, 5), (None, None)]
    assert {r["path"] for r in rows[:6]} == {str(tmp_path / "head.nii.gz")} and rows[6]["path"] == image
    classes = load_run(run_dir).classes
    mean = np.mean([[r["probabilities"][c] for c in classes] for r in rows[:5]], axis=0)
    assert np.allclose(mean, [rows[5]["probabilities"][c] for c in classes])


def test_the_terminal_shows_rows_and_a_summary(tiny, monkeypatch):
    run_dir, data = tiny
    monkeypatch.chdir(data)
    result, lines = _predict(str(run_dir), "glioma_tumor")
    assert result.exit_code == 0, result.output
    assert sum(f"glioma_tumor/scan{i}.png" in result.output for i in range(4)) == 4
    assert "all 1 (mean)" not in result.output
    assert lines[-1].startswith("4 input(s) predicted (4 images and slices): ")


def test_the_table_is_printed_in_chunks_of_the_same_widths():
    from rich.console import Console

    from btk.predict import Prediction
    from btk.render.tables import PredictionTable

    console = Console(record=True, width=100)
    table = PredictionTable("predictions", ["a", "b"], console, slices=False, chunk=10)
    for i in range(25):
        table.write(Prediction(f"folder/image{i:02d}.jpg", None, "a", {"a": 0.75, "b": 0.25}))
        assert len(table.rows) < 10
    table.close()
    text = console.export_text()
    rows = [line for line in text.splitlines() if "image" in line]
    assert len(rows) == 25 and text.count("predictions") == 1
    assert len({line.index("0.750") for line in rows}) == 1


def test_a_missing_path_is_one_line_before_the_model_loads(tiny, tmp_path, monkeypatch):
    run_dir, data = tiny
    _no_model_load(monkeypatch)
    out = tmp_path / "rows.csv"
    result, lines = _predict(str(run_dir), str(data), str(tmp_path / "nope.jpg"), "--out", str(out))
    _assert_one_line_error(result, lines, f"not found: {tmp_path / 'nope.jpg'}")
    assert not out.exists() and not (tmp_path / "rows.csv.partial").exists()


def test_a_folder_without_images_is_one_line(tiny, tmp_path, monkeypatch):
    run_dir, _ = tiny
    _no_model_load(monkeypatch)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no images here")
    result, lines = _predict(str(run_dir), str(tmp_path / "empty"))
    _assert_one_line_error(result, lines, "nothing to read in", str(tmp_path / "empty"))


def test_an_unreadable_file_is_listed_and_the_others_predicted(tiny, tmp_path):
    run_dir, data = tiny
    folder = tmp_path / "mixed"
    shutil.copytree(data / "no_tumor", folder)
    (folder / "broken.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    out = tmp_path / "rows.csv"
    result, _ = _predict(str(run_dir), str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"btk: skipped {folder / 'broken.jpg'}: cannot decode image" in result.stderr
    assert "btk: 1 input(s) could not be read" in result.stderr
    with open(out, newline="") as fh:
        assert [r["path"] for r in csv.DictReader(fh)] == [str(folder / f"scan{i}.png") for i in range(4)]


def test_nothing_readable_is_one_line_and_no_file(tiny, tmp_path):
    run_dir, _ = tiny
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "rows.jsonl"
    result, lines = _predict(str(run_dir), str(tmp_path / "bad.jpg"), "--out", str(out))
    _assert_one_line_error(result, lines, "nothing could be read")
    assert "btk: skipped" in result.stderr
    assert not out.exists() and not (tmp_path / "rows.jsonl.partial").exists()


def test_a_directory_that_is_not_a_run_is_one_line(tiny, tmp_path, monkeypatch):
    _, data = tiny
    _no_model_load(monkeypatch)
    (tmp_path / "notarun").mkdir()
    result, lines = _predict(str(tmp_path / "notarun"), str(data))
    _assert_one_line_error(result, lines, "is not a complete btk run")


def test_an_unknown_out_suffix_is_one_line(tiny, tmp_path, monkeypatch):
    run_dir, data = tiny
    _no_model_load(monkeypatch)
    result, lines = _predict(str(run_dir), str(data), "--out", str(tmp_path / "rows.txt"))
    _assert_one_line_error(result, lines, ".csv or .jsonl", "rows.txt")
    assert not any(tmp_path.iterdir())


def test_a_model_with_a_lambda_layer_is_one_line_and_no_file(tiny, tmp_path):
    import keras

    run_dir, data = tiny
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    inputs = keras.Input((32, 32, 1))
    doubled = keras.layers.Lambda(lambda t: t * 2)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(doubled))
    keras.Model(inputs, outputs).save(copy / "model.keras")
    out = tmp_path / "rows.csv"
    result, lines = _predict(str(copy), str(data), "--out", str(out))
    _assert_one_line_error(result, lines, "Lambda", "model.keras")
    assert not out.exists() and not (tmp_path / "rows.csv.partial").exists()


def test_read_ahead_keeps_order_stops_at_its_limit_and_passes_errors_on():
    import threading

    from btk.read_ahead import ReadAhead

    pulled: list[int] = []
    gate = threading.Event()

    def items():
        for i in range(10):
            pulled.append(i)
            yield i
        raise ValueError("broken at the end")

    ahead = ReadAhead(items(), limit=3)
    first = next(ahead)
    gate.wait(0.2)
    assert first == 0 and len(pulled) <= 5  # three held ready, one being handed over, at most
    rest = []
    with pytest.raises(ValueError, match="broken at the end"):
        for item in ahead:
            rest.append(item)
    assert rest == list(range(1, 10))
    ahead.close()


def test_an_interrupted_file_leaves_nothing_and_a_complete_one_replaces_the_old(tmp_path):
    from btk.predict import Prediction
    from btk.predict_output import PredictionFile

    out = tmp_path / "rows.csv"
    row = Prediction("a.png", None, "a", {"a": 0.5, "b": 0.5})
    with pytest.raises(KeyboardInterrupt), PredictionFile(out, ["a", "b"]) as writer:
        writer.write(row)
        assert (tmp_path / "rows.csv.partial").exists() and not out.exists()
        raise KeyboardInterrupt
    assert not any(tmp_path.iterdir())
    out.write_text("an older file\n")
    with PredictionFile(out, ["a", "b"]) as writer:
        writer.write(row)
    assert out.read_text().splitlines() == ["path,slice,predicted,p_a,p_b", "a.png,,a,0.5,0.5"]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_min_confidence_one_marks_every_answer_uncertain(tiny, tmp_path):
    run_dir, data = tiny
    classes = load_run(run_dir).classes
    for name in ("rows.csv", "rows.jsonl"):
        result, _ = _predict(str(run_dir), str(data), "--out", str(tmp_path / name), "--min-confidence", "1.0")
        assert result.exit_code == 0, result.output
    with open(tmp_path / "rows.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    records = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(table) == len(records) == 8
    assert {r["predicted"] for r in table} == {r["predicted"] for r in records} == {"uncertain"}
    assert all(abs(sum(float(r[f"p_{c}"]) for c in classes) - 1) < 1e-5 for r in table)
    result, _ = _predict(str(run_dir), str(data), "--min-confidence", "1")
    assert result.exit_code == 0 and "uncertain 8" in result.output, result.output
    result, _ = _predict(str(run_dir), str(data), "--min-confidence", "0")
    assert "uncertain" not in result.output


def test_min_confidence_outside_zero_to_one_is_a_usage_error(tiny):
    run_dir, data = tiny
    result, _ = _predict(str(run_dir), str(data), "--min-confidence", "1.5")
    assert result.exit_code == 2 and "--min-confidence" in result.output
