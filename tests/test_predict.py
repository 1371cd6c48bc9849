"""btk predict: batches that span files give the one-by-one answers, the run's calibrated
probabilities; rows name their inputs as given; a predictions directory (predictions.csv,
predict.json) written as rows come, complete or absent, and a JSON list on standard output that
always parses; bad input is one line, found before the model loads; unreadable files are listed
and the rest predicted."""

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
                                      "--set", "channels=1", "--epochs", "1", "--duplicate-threshold", "0",
                                      "--out", str(root / "runs"), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    return next((root / "runs").iterdir()), data


def _predict(run_dir, *paths, flags: tuple[str, ...] = ()) -> tuple[object, list[str]]:
    """``btk predict RUN --data PATH ... FLAGS``."""
    data = [arg for path in paths for arg in ("--data", str(path))]
    result = CliRunner().invoke(cli, ["predict", str(run_dir), *data, *flags])
    return result, [line for line in result.output.splitlines() if line.strip()]


def _folder(out: Path, run_dir: Path) -> Path:
    """The one predictions directory ``--out out`` made (and nothing else there)."""
    made = list(out.iterdir())
    assert len(made) == 1 and made[0].name.endswith(f"-predict-{Path(run_dir).name}"), made
    return made[0]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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

    return list(predict_stream(run, gather_inputs(paths, get_host(), run.read_options({})), **kwargs))


def _no_model_load(monkeypatch) -> None:
    def refuse(self):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(Run, "load_model", refuse)


def test_batches_across_files_give_the_one_by_one_probabilities(tiny, monkeypatch):
    from btk import training
    from btk.calibration import apply_temperature
    from btk.dataset import load_dataset
    from btk.scoring import Scorer

    run_dir, data = tiny
    run = load_run(run_dir)
    files = [str(p) for p in sorted(data.glob("*/*.png"))][:5]
    one_by_one = [_stream(run, [f])[0] for f in files]
    calls: list[int] = []
    shapes: list[tuple[int, ...]] = []
    real_call, real_input = Scorer.__call__, training.network_input
    monkeypatch.setattr(Scorer, "__call__", lambda self, x: calls.append(len(x)) or real_call(self, x))
    monkeypatch.setattr(training, "network_input",
                        lambda x, *args, **kw: shapes.append(x.shape) or real_input(x, *args, **kw))
    batched = _stream(run, files, batch_size=2)
    assert calls == [2, 2, 1]  # one scorer call per batch of two, across files
    # the network sees one shape in every call: the run's batch size, the last batch filled up
    assert len(shapes) == 3 and set(shapes) == {(run.recipe.batch_size, 32, 32, 1)}
    monkeypatch.undo()
    in_one = _stream(run, files)
    assert [p.path for p in batched] == [p.path for p in in_one] == files
    for a, b, c in zip(one_by_one, batched, in_one):
        for cls in run.classes:
            assert abs(a.probabilities[cls] - b.probabilities[cls]) < 1e-6
            assert abs(a.probabilities[cls] - c.probabilities[cls]) < 1e-6
    # and as a bare Keras predict gives them for the images read as a dataset, with the run's
    # temperature applied (the run's calibrated probabilities; the top class is the model's)
    recipe = run.recipe
    dataset = load_dataset(get_host().readers.get("folder"), data, run.read_options({}), cache=False)
    x = training.network_input(dataset.images, recipe.scale, recipe.intensity)
    raw = np.asarray(run.load_model().predict(x, verbose=0), dtype=np.float64)
    expected = apply_temperature(raw, run.temperature)
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
    result, _ = _predict(run_dir, "ext", "flat/", "one.png", flags=("--json",))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["path"] for r in rows] == ["ext/a/x.png", "ext/b/deeper/x.png", "flat/x.png", "flat/y.PNG", "one.png"]
    assert all(r["slice"] is None and r["aggregated_over"] is None for r in rows)  # 2D images: no mean row
    assert len({json.dumps(r["probabilities"]) for r in rows}) == 1  # the same image everywhere


def test_out_makes_a_predictions_directory_with_every_row(tiny, tmp_path):
    run_dir, data = tiny
    classes = load_run(run_dir).classes
    out = tmp_path / "preds"
    result, _ = _predict(run_dir, data, flags=("--out", str(out)))
    assert result.exit_code == 0, result.output
    folder = _folder(out, run_dir)
    assert sorted(p.name for p in folder.iterdir()) == ["predict.json", "predictions.csv"]
    assert f"8rowswrittento{folder / 'predictions.csv'}" in "".join(result.output.split())  # rich may wrap the line
    table = _csv(folder / "predictions.csv")
    assert list(table[0]) == ["path", "slice", "predicted", *[f"p_{c}" for c in classes]]
    summary = json.loads((folder / "predict.json").read_text())
    assert summary["run"] == str(run_dir) and summary["inputs"] == [str(data)]
    assert summary["rows"] == summary["images"] == 8 and summary["skipped"] == []
    assert sum(summary["answers"].values()) == 8
    result, _ = _predict(run_dir, data, flags=("--json",))
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(table) == len(records) == 8
    for row, record in zip(table, records):
        assert row["path"] == record["path"] and row["path"].startswith(str(data) + "/")
        assert row["slice"] == "" and record["slice"] is None
        probs = [float(row[f"p_{c}"]) for c in classes]
        assert abs(sum(probs) - 1) < 1e-5 and row["predicted"] == classes[int(np.argmax(probs))]
        assert np.allclose(probs, [record["probabilities"][c] for c in classes])
    assert summary["answers"] == {c: n for c in classes if (n := sum(r["predicted"] == c for r in table))}


def test_a_volume_gets_a_row_per_slice_and_its_mean(tiny, tmp_path):
    import nibabel as nib

    run_dir, data = tiny
    slices = [make_phantom("glioma_tumor", np.random.default_rng(s), 48) for s in range(5)]
    volume = np.stack([np.flipud(s).T for s in slices], axis=-1)  # RAS+: slice_stack shows each as drawn
    nib.save(nib.Nifti1Image(volume.astype(np.uint8), np.eye(4)), str(tmp_path / "head.nii.gz"))
    image = str(data / "no_tumor" / "scan1.png")
    result, _ = _predict(run_dir, tmp_path / "head.nii.gz", image, flags=("-R", "clip=none", "--json"))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["slice"], r["aggregated_over"]) for r in rows] == [(0, None), (1, None), (2, None), (3, None),
                                                                  (4, None), (None, 5), (None, None)]
    assert {r["path"] for r in rows[:6]} == {str(tmp_path / "head.nii.gz")} and rows[6]["path"] == image
    classes = load_run(run_dir).classes
    mean = np.mean([[r["probabilities"][c] for c in classes] for r in rows[:5]], axis=0)
    assert np.allclose(mean, [rows[5]["probabilities"][c] for c in classes])


def test_the_terminal_shows_rows_and_a_summary(tiny, monkeypatch):
    run_dir, data = tiny
    monkeypatch.chdir(data)
    result, lines = _predict(run_dir, "glioma_tumor")
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
    out = tmp_path / "preds"
    result, lines = _predict(run_dir, data, tmp_path / "nope.jpg", flags=("--out", str(out)))
    _assert_one_line_error(result, lines, f"not found: {tmp_path / 'nope.jpg'}")
    assert not out.exists()  # no predictions directory, not even a partial one or an empty --out


def test_a_folder_without_images_is_one_line(tiny, tmp_path, monkeypatch):
    run_dir, _ = tiny
    _no_model_load(monkeypatch)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no images here")
    result, lines = _predict(run_dir, tmp_path / "empty")
    _assert_one_line_error(result, lines, "nothing to read in", str(tmp_path / "empty"))


def test_an_unreadable_file_is_listed_and_the_others_predicted(tiny, tmp_path):
    run_dir, data = tiny
    folder = tmp_path / "mixed"
    shutil.copytree(data / "no_tumor", folder)
    (folder / "broken.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    out = tmp_path / "preds"
    result, _ = _predict(run_dir, folder, flags=("--out", str(out)))
    assert result.exit_code == 0, result.output
    assert f"btk: skipped {folder / 'broken.jpg'}: cannot decode image" in result.stderr
    assert "btk: 1 input(s) could not be read" in result.stderr
    made = _folder(out, run_dir)
    assert [r["path"] for r in _csv(made / "predictions.csv")] == [str(folder / f"scan{i}.png") for i in range(4)]
    skipped = json.loads((made / "predict.json").read_text())["skipped"]
    assert [s["source"] for s in skipped] == [str(folder / "broken.jpg")]


def test_nothing_readable_is_one_line_and_no_file(tiny, tmp_path):
    run_dir, _ = tiny
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "preds"
    result, lines = _predict(run_dir, tmp_path / "bad.jpg", flags=("--out", str(out)))
    _assert_one_line_error(result, lines, "nothing could be read")
    assert "btk: skipped" in result.stderr
    assert not out.exists()  # no predictions directory, not even a partial one or an empty --out
    result, lines = _predict(run_dir, tmp_path / "bad.jpg", flags=("--json",))
    _assert_one_line_error(result, lines, "nothing could be read")
    assert result.stdout == ""  # a failed command prints no result, not even an empty list


def test_a_directory_that_is_not_a_run_is_one_line(tiny, tmp_path, monkeypatch):
    _, data = tiny
    _no_model_load(monkeypatch)
    (tmp_path / "notarun").mkdir()
    result, lines = _predict(tmp_path / "notarun", data)
    _assert_one_line_error(result, lines, "is not a complete btk run")


def test_an_out_that_cannot_be_written_is_one_line(tiny, tmp_path, monkeypatch):
    run_dir, data = tiny
    _no_model_load(monkeypatch)
    (tmp_path / "rows.csv").write_text("a file, not a folder\n")
    result, lines = _predict(run_dir, data, flags=("--out", str(tmp_path / "rows.csv")))
    _assert_one_line_error(result, lines, "--out", "rows.csv", "cannot write there")
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_a_model_with_a_lambda_layer_is_one_line_and_no_file(tiny, tmp_path):
    import keras

    run_dir, data = tiny
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    inputs = keras.Input((32, 32, 1))
    doubled = keras.layers.Lambda(lambda t: t * 2)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(doubled))
    keras.Model(inputs, outputs).save(copy / "model.keras")
    out = tmp_path / "preds"
    result, lines = _predict(copy, data, flags=("--out", str(out)))
    _assert_one_line_error(result, lines, "Lambda", "model.keras")
    assert not out.exists()  # no predictions directory, not even a partial one or an empty --out


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


def test_an_interrupted_directory_leaves_nothing_and_a_complete_one_is_new(tmp_path):
    from btk.predict import Prediction
    from btk.predict_output import PredictionFile
    from btk.run_files import ResultDir

    row = Prediction("a.png", None, "a", {"a": 0.5, "b": 0.5})
    with pytest.raises(KeyboardInterrupt), ResultDir(tmp_path, "predict-x") as folder, \
            PredictionFile(folder.path("predictions.csv"), ["a", "b"]) as writer:
        writer.write(row)
        assert folder.path("predictions.csv").exists() and not folder.final.exists()
        raise KeyboardInterrupt
    assert not any(tmp_path.iterdir())
    made = []
    for _ in range(2):  # a second one is a new directory beside the first, which stays as it was
        with ResultDir(tmp_path, "predict-x") as folder, \
                PredictionFile(folder.path("predictions.csv"), ["a", "b"]) as writer:
            writer.write(row)
        made.append(folder.final)
    assert sorted(tmp_path.iterdir()) == sorted(made) and made[0] != made[1]
    for path in made:
        assert path.name.endswith("predict-x") or path.name.endswith("predict-x-2")
        assert (path / "predictions.csv").read_text().splitlines() == ["path,slice,predicted,p_a,p_b",
                                                                       "a.png,,a,0.5,0.5"]


def test_predict_run_interrupted_leaves_no_directory(tiny, tmp_path):
    from btk.predict_output import predict_run

    run_dir, data = tiny
    seen = []

    def stop(row):
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_run(load_run(run_dir), [data], tmp_path / "preds", on_row=stop)
    assert len(seen) == 3 and not (tmp_path / "preds").exists()  # nor the --out folder it made


def test_min_confidence_one_marks_every_answer_uncertain(tiny, tmp_path):
    run_dir, data = tiny
    classes = load_run(run_dir).classes
    result, _ = _predict(run_dir, data, flags=("--out", str(tmp_path / "preds"), "--min-confidence", "1.0"))
    assert result.exit_code == 0, result.output
    table = _csv(_folder(tmp_path / "preds", run_dir) / "predictions.csv")
    result, _ = _predict(run_dir, data, flags=("--json", "--min-confidence", "1.0"))
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(table) == len(records) == 8
    assert {r["predicted"] for r in table} == {r["predicted"] for r in records} == {"uncertain"}
    assert all(abs(sum(float(r[f"p_{c}"]) for c in classes) - 1) < 1e-5 for r in table)
    result, _ = _predict(run_dir, data, flags=("--min-confidence", "1"))
    assert result.exit_code == 0 and "uncertain 8" in result.output, result.output
    result, _ = _predict(run_dir, data, flags=("--min-confidence", "0"))
    assert "uncertain" not in result.output


def test_min_confidence_outside_zero_to_one_is_a_usage_error(tiny):
    run_dir, data = tiny
    result, _ = _predict(run_dir, data, flags=("--min-confidence", "1.5"))
    assert result.exit_code == 2 and "--min-confidence" in result.output
