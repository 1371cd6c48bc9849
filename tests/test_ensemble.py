"""Ensembles (btk ensemble --train, btk ensemble) and test-time augmentation: the ensemble's model
is plain Keras and outputs the mean of its members' probabilities; the mirror-image average is
exact and symmetric."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.runs import load_run


def _probabilities(run_dir: Path) -> dict[str, np.ndarray]:
    with open(run_dir / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["condition"] == "clean"]
    return {r["source"]: np.array([float(v) for k, v in r.items() if k.startswith("p_")]) for r in rows}


def _subset(run_dir: Path, subset: str) -> set[str]:
    with open(run_dir / "split.csv", newline="") as fh:
        return {r["source"] for r in csv.DictReader(fh) if r["subset"] == subset}


def test_tta_averages_the_image_and_its_mirror_image():
    import keras

    from btk.tta import with_tta

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 10, 1))
    x = keras.layers.Conv2D(3, 3)(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).random((5, 12, 10, 1)).astype("float32")
    plain = model.predict(images, verbose=0)
    mirrored = model.predict(images[:, :, ::-1], verbose=0)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the network is not symmetric by itself
    tta = with_tta(model)
    out = tta.predict(images, verbose=0)
    assert np.allclose(out, (plain + mirrored) / 2, atol=1e-6)
    assert np.allclose(tta.predict(images[:, :, ::-1], verbose=0), out, atol=1e-6)  # mirror-invariant


@pytest.mark.slow
def test_ensemble_run_is_the_mean_of_its_members_and_plain_keras_loads_it(tiny_sartaj_run, tmp_path):
    import keras

    data = tmp_path / "data"  # tiny_sartaj_run's 6 + 6 real images
    trained = CliRunner().invoke(cli, ["ensemble", "--train", "2", "--data", str(data), "--model", "small-cnn",
                                       "--image-size", "32", "--epochs", "1", "--name", "e", "--tta",
                                       "--out", str(tmp_path / "runs"), "--reporter", "none"])
    assert trained.exit_code == 0, trained.output
    runs = {p.name.split("-", 2)[-1]: p for p in (tmp_path / "runs").iterdir()}
    assert sorted(runs) == ["e-ensemble2", "e-member1", "e-member2"]
    m1, m2, ens = runs["e-member1"], runs["e-member2"], runs["e-ensemble2"]
    c1, c2 = (json.loads((m / "config.json").read_text())["config"] for m in (m1, m2))
    assert (c1["seed"], c2["seed"], c1["split_seed"], c2["split_seed"]) == (101, 102, 101, 101)
    for subset in ("train", "val", "test"):  # members share one split, so the temperature is fitted
        assert _subset(m1, subset) == _subset(m2, subset) == _subset(ens, subset)
    run = load_run(ens)
    assert run.ensemble is not None and run.ensemble.shared_validation
    assert run.calibration is not None and run.tta
    assert [m.seed for m in run.ensemble.members] == [101, 102]
    # the ensemble's prediction sets are its own: calibrated on its own validation probabilities
    own, member = run.conformal(), load_run(m1).conformal()
    assert own is not None and member is not None and own.sources == member.sources
    assert not np.allclose(own.probabilities, member.probabilities)
    # every test image: the ensemble's network output is the mean of the members' (each with
    # test-time augmentation), and its predictions.csv holds those outputs, calibrated
    test = run.images("test")
    assert len(test.sources) >= 2

    def outputs(path: Path) -> np.ndarray:
        with load_run(path).scorer() as scorer:
            return scorer.outputs(test.images)

    o1, o2, oe = outputs(m1), outputs(m2), outputs(ens)
    assert np.allclose(oe, (o1 + o2) / 2, atol=2e-6)
    with run.scorer() as scorer:
        expected = scorer.probabilities(oe)
    pe = _probabilities(ens)
    assert set(pe) == set(test.sources)
    for source, probs in zip(test.sources, expected):
        assert np.allclose(pe[source], probs, atol=2e-6)
    # plain Keras, safe mode, nothing of btk's: one input, a layer per member, their mean
    model = keras.saving.load_model(ens / "model.keras", compile=False, safe_mode=True)
    assert [layer.name for layer in model.layers] == ["image", "member_1", "member_2", "mean_probability"]
    x = np.random.default_rng(1).random((3, *model.input_shape[1:])).astype("float32")
    members = [keras.saving.load_model(m / "model.keras", compile=False) for m in (m1, m2)]
    assert np.allclose(model.predict(x, verbose=0), sum(m.predict(x, verbose=0) for m in members) / 2, atol=1e-6)
    # predict and evaluate follow the run's test-time augmentation unless told otherwise
    scans = [arg for p in sorted((data / "no_tumor").iterdir())[:3] for arg in ("--data", str(p))]

    def predicted(*flags: str) -> np.ndarray:
        out = CliRunner().invoke(cli, ["predict", str(ens), *scans, "--json", *flags])
        assert out.exit_code == 0, out.output
        rows = json.loads(out.stdout)
        return np.array([[row["probabilities"][c] for c in sorted(row["probabilities"])] for row in rows])

    assert np.allclose(predicted(), predicted("--tta")) and not np.allclose(predicted(), predicted("--no-tta"))
    out = CliRunner().invoke(cli, ["evaluate", str(ens), "--data", str(data), "--no-tta", "--reporter", "none"])
    assert out.exit_code == 0, out.output
    evaluation = next((ens / "evaluations").iterdir())
    assert json.loads((evaluation / "config.json").read_text())["config"]["tta"] is False
    # btk ensemble of the same two runs writes the same predictions; other runs are refused
    result = CliRunner().invoke(cli, ["ensemble", str(m1), str(m2), "--name", "again", "--reporter", "none"])
    assert result.exit_code == 0, result.output
    again = next(p for p in (tmp_path / "runs").iterdir() if p.name.endswith("-again"))
    assert all(np.allclose(_probabilities(again)[s], p, atol=1e-6) for s, p in pe.items())
    single = CliRunner().invoke(cli, ["ensemble", str(m1)])
    assert single.exit_code != 0 and "at least two runs" in single.output and "Traceback" not in single.output
    nested = CliRunner().invoke(cli, ["ensemble", str(ens), str(m1)])
    assert nested.exit_code != 0 and "ensemble already" in nested.output
    twice = CliRunner().invoke(cli, ["ensemble", str(m1), str(m1)])  # the same run twice: one line
    assert twice.exit_code == 1 and "Traceback" not in twice.output
    assert len(twice.output.strip().splitlines()) == 1 and "the same run is given twice" in twice.output
    assert not any(p.name.endswith("-ensemble2") and p != ens for p in (tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_runs_with_other_validation_images_combine_without_a_temperature(tmp_path, sartaj):
    import shutil

    data = tmp_path / "data"
    for c in ("meningioma_tumor", "no_tumor"):
        files = sorted((sartaj / "Training" / c).glob("*.jpg"))[:10]
        for split, part in (("Training", files[:7]), ("Testing", files[7:])):
            (data / split / c).mkdir(parents=True)
            for f in part:
                shutil.copy(f, data / split / c / f.name)
    out = tmp_path / "runs"
    for seed, name in (("101", "a"), ("7", "b")):
        result = CliRunner().invoke(cli, ["run", "--data", str(data), "--model", "small-cnn", "--image-size", "32",
                                          "--epochs", "1", "--seed", seed, "--name", name, "--out", str(out),
                                          "--reporter", "none"])
        assert result.exit_code == 0, result.output
    a, b = (next(p for p in out.iterdir() if p.name.endswith(f"-{n}")) for n in "ab")
    assert _subset(a, "val") != _subset(b, "val") and _subset(a, "test") == _subset(b, "test")
    result = CliRunner().invoke(cli, ["ensemble", str(a), str(b), "--reporter", "none"])
    assert result.exit_code == 0, result.output
    assert "different validation images" in result.output
    ens = load_run(next(p for p in out.iterdir() if "ensemble2" in p.name))
    assert ens.calibration is None and ens.temperature == 1.0
    assert "calibration" not in json.loads((ens.path / "config.json").read_text())
    assert ens.ensemble is not None and not ens.ensemble.shared_validation
