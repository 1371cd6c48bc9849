"""Data-parallel training (btk.distribute): 4 virtual CPU devices train as 1 does, the run records
its devices, its model predicts on one device; bad --devices and multi-host settings are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from btk.cli import cli
from btk.distribute import multihost_from, parse_devices
from btk.errors import BtkError

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
LOSS_TOLERANCE = 1e-4  # relative, per epoch (float32; measured about 1e-6: the order of float sums)


def _env(devices: int | None) -> dict[str, str]:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # the networks here are tiny: XLA's optimisation passes would cost more than they save
    flags = ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


TRAIN = textwrap.dedent("""
    import csv, json, sys
    from btk.config import make_run_config
    from btk.feedback import RecordingFeedback
    from btk.pipeline import run_experiment

    out = {}
    for devices in ("4", "1"):
        config = make_run_config(recipe={"image_size": 32, "epochs": 2, "batch_size": 8, "augment_images": False,
                                         "precision": "float32"},
                                 reader_options={"per_class": "8", "test_per_class": "4"}, devices=devices,
                                 name=f"d{devices}", duplicate_threshold=0)
        feedback = RecordingFeedback()
        run = run_experiment(config, sys.argv[1], feedback)
        with open(run.path / "predictions.csv", newline="") as f:
            probs = [[float(v) for k, v in r.items() if k.startswith("p_")] for r in csv.DictReader(f)]
        out[devices] = {"path": str(run.path), "loss": run.history["loss"], "val_loss": run.history["val_loss"],
                        "distribution": run.distribution, "probs": probs,
                        "scoring": [t for k, t in feedback.messages if t.startswith("scoring over")]}

    # batch norm under DataParallel: the statistics are the global batch's, not each device's
    import keras, numpy as np
    x = np.arange(8 * 3, dtype="float32").reshape(8, 3) ** 2
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        device_mesh=keras.distribution.DeviceMesh((4,), ["batch"], keras.distribution.list_devices())))
    bn = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.0)])
    bn.compile("sgd", "mse")
    bn.fit(x, np.zeros_like(x), batch_size=8, epochs=1, verbose=0)
    out["bn_moving_mean"] = np.asarray(bn.layers[0].moving_mean).tolist()
    out["batch_mean"] = x.mean(axis=0).tolist()
    print("RESULT " + json.dumps(out))
""")

PREDICT = textwrap.dedent("""
    import sys, keras, numpy as np
    model = keras.saving.load_model(sys.argv[1])
    print("DEVICES", len(keras.distribution.list_devices()), "SHAPE", model.predict(np.zeros((3, 32, 32, 3)),
          verbose=0).shape)
""")


@pytest.mark.slow
def test_four_devices_train_as_one(tmp_path):
    done = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path)], env=_env(4), capture_output=True, text=True,
                          timeout=900)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    four, one = out["4"], out["1"]
    assert four["distribution"]["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert four["distribution"]["backend"] == "jax" and four["distribution"]["per_device_batch"] == 2
    assert one["distribution"]["devices"] == ["cpu:0"]
    for key in ("loss", "val_loss"):
        for a, b in zip(four[key], one[key], strict=True):
            assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (key, four[key], one[key])
    # the run's own validation and test images are scored on its 4 devices, with the one-device answers
    assert four["scoring"] == ["scoring over 4 device(s) (cpu:0, cpu:1, cpu:2, cpu:3): every batch split between "
                               "them"] and one["scoring"] == ["scoring over 1 device(s) (cpu:0): every batch split "
                                                              "between them"]
    assert np.abs(np.array(four["probs"]) - np.array(one["probs"])).max() < 1e-4
    # batch norm's statistics span the whole (global) batch of 8, not a device's 2 images
    assert out["bn_moving_mean"] == pytest.approx(out["batch_mean"], rel=1e-5)
    # the saved model is a plain Keras file: it loads and predicts on one device
    model = Path(four["path"]) / "model.keras"
    done = subprocess.run([sys.executable, "-c", PREDICT, str(model)], env=_env(None), capture_output=True,
                          text=True, timeout=300)
    assert "DEVICES 1 SHAPE (3, 4)" in done.stdout, done.stdout[-1000:] + done.stderr[-2000:]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _small_run(out: Path, name: str) -> list[str]:
    """``btk run`` of the small run both layouts train (one epoch)."""
    return [sys.executable, "-m", "btk", "run", "-R", "per_class=8", "-R", "test_per_class=4", "--image-size", "32",
            "--epochs", "1", "--model", "small-cnn", "--batch-size", "8", "--set", "augment_images=off", "--set",
            "precision=float32", "--devices", "auto", "--name", name, "--out", str(out), "--reporter", "none"]


def _finished(out: Path) -> list[Path]:
    return sorted(d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")) if out.exists() else []


@pytest.mark.slow
def test_two_processes_write_one_run(tmp_path):
    """Two jax.distributed processes on 127.0.0.1 (2 virtual CPU devices each; CPU collectives
    through gloo), configured by JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID:
    both exit 0, process 0 alone writes the run, which records 4 devices, and its losses
    (small-cnn, dropout in its head) are those of one process on 4 devices."""
    out, port = tmp_path / "runs", _free_port()
    procs = [subprocess.Popen(_small_run(out, "multihost"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**_env(2), **_jax_env(f"127.0.0.1:{port}", "2", str(k))}) for k in range(2)]
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=900)[0])
        except subprocess.TimeoutExpired:
            proc.kill()
            outputs.append(proc.communicate()[0])
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outputs]
    (run_dir,) = _finished(out)
    distribution = json.loads((run_dir / "config.json").read_text())["distribution"]
    assert len(distribution["devices"]) == 4 and distribution["processes"] == 2
    two = json.loads((run_dir / "history.json").read_text())

    reference = tmp_path / "one-process"
    done = subprocess.run(_small_run(reference, "one-process"), env=_env(4), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
    (one_dir,) = _finished(reference)
    one = json.loads((one_dir / "history.json").read_text())
    for key in ("loss", "val_loss"):
        assert len(two[key]) == len(one[key]) == 1, (key, two, one)
        for a, b in zip(two[key], one[key], strict=True):
            assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (key, two[key], one[key])


def test_parse_devices():
    assert parse_devices("auto", 4) == [0, 1, 2, 3]
    assert parse_devices("2", 4) == [0, 1]
    assert parse_devices("3,1", 4) == [3, 1]
    with pytest.raises(BtkError, match="only 4 device"):
        parse_devices("8", 4)
    with pytest.raises(BtkError, match=r"no device 5 \(there are 4"):
        parse_devices("0,5", 4)
    with pytest.raises(BtkError, match="write auto"):
        parse_devices("many", 4)


def _jax_env(coordinator: str | None = None, count: str | None = None, index: str | None = None) -> dict[str, str]:
    names = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
    return {k: v for k, v in zip(names, (coordinator, count, index), strict=True) if v is not None}


def test_multihost_settings():
    assert multihost_from(environ={}) is None
    assert multihost_from(environ={"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}) is None  # plain srun
    got = multihost_from(environ={"JAX_COORDINATOR_ADDRESS": "h:1", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"})
    assert (got.coordinator, got.num_processes, got.process_id) == ("h:1", 2, 1)
    got = multihost_from(environ=_jax_env("h:1", "2", "0"))
    assert (got.coordinator, got.num_processes, got.process_id) == ("h:1", 2, 0)
    # JAX's own variables win over Slurm's
    got = multihost_from(environ={**_jax_env("h:1", "4", "3"), "SLURM_NTASKS": "2", "SLURM_PROCID": "1"})
    assert (got.num_processes, got.process_id) == (4, 3)
    with pytest.raises(BtkError, match="need a coordinator: set JAX_COORDINATOR_ADDRESS"):
        multihost_from(environ=_jax_env(count="2"))
    with pytest.raises(BtkError, match="need a coordinator"):
        multihost_from(environ=_jax_env(index="1"))
    with pytest.raises(BtkError, match="process id 2 must be below the number of processes 2"):
        multihost_from(environ=_jax_env("h:1", "2", "2"))
    with pytest.raises(BtkError, match="HOST:PORT"):
        multihost_from(environ=_jax_env("nohostport", "2", "0"))
    with pytest.raises(BtkError, match="needs JAX_NUM_PROCESSES and JAX_PROCESS_ID"):
        multihost_from(environ=_jax_env("h:1", "2"))
    with pytest.raises(BtkError, match="JAX_NUM_PROCESSES='two' is not a number"):
        multihost_from(environ=_jax_env("h:1", "two", "0"))


def _one_line_error(args: list[str], env: dict[str, str], *fragments: str) -> None:
    result = CliRunner().invoke(cli, ["run", *args], env=env)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output


def test_bad_multihost_settings(tmp_path):
    out = ["--out", str(tmp_path / "runs")]
    _one_line_error(out, _jax_env(count="2"), "coordinator", "JAX_COORDINATOR_ADDRESS")
    _one_line_error(out, _jax_env("127.0.0.1:1", "2", "2"),
                    "process id 2 must be below the number of processes 2")
    assert not (tmp_path / "runs").exists()


DEVICES_ERROR = textwrap.dedent("""
    import sys
    from click.testing import CliRunner
    from btk.cli import cli
    for spec in sys.argv[2:]:
        result = CliRunner().invoke(cli, ["run", "--devices", spec, "--epochs", "1", "--image-size", "32",
                                          "-R", "per_class=2", "--out", sys.argv[1]])
        print("EXIT", result.exit_code, "|".join(l for l in result.output.splitlines() if l.startswith("Error:")))
""")


def test_bad_devices(tmp_path):
    done = subprocess.run([sys.executable, "-c", DEVICES_ERROR, str(tmp_path / "runs"), "8", "0,7"], env=_env(4),
                          capture_output=True, text=True, timeout=300)
    lines = [x for x in done.stdout.splitlines() if x.startswith("EXIT")]
    assert len(lines) == 2, done.stdout[-1000:] + done.stderr[-2000:]
    assert lines[0].startswith("EXIT 1 Error:") and "only 4 device(s)" in lines[0], lines[0]
    assert lines[1].startswith("EXIT 1 Error:") and "no device 7 (there are 4" in lines[1], lines[1]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_tensorflow_refuses_several_devices(tmp_path):
    env = {**_env(None), "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", DEVICES_ERROR, str(tmp_path / "runs"), "2"], env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [x for x in done.stdout.splitlines() if x.startswith("EXIT")]
    assert len(lines) == 1, done.stdout[-1000:] + done.stderr[-2000:]
    assert lines[0].startswith("EXIT 1 Error:") and "needs the JAX backend" in lines[0], lines[0]


SCORING = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import keras, numpy as np
    from click.testing import CliRunner
    from btk.cli import cli
    from btk.distribute import scoring
    from btk.runs import load_run

    run_dir, data, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    result = {}

    def invoke(args):
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 0, done.output
        return done.stdout

    # btk predict: 12 images, one batch filled up to the scorer's batch, over 4 devices, and on Keras' default device
    for spec in ("", "4"):
        rows = json.loads(invoke(["predict", str(run_dir), "--data", data, "--json",
                                  *(["--devices", spec] if spec else [])]))
        result[f"predict{spec}"] = [[r["probabilities"][c] for c in sorted(r["probabilities"])] for r in rows]

    # btk evaluate: the run's whole data folder, 4 devices against none
    for spec in ("", "4"):
        invoke(["evaluate", str(run_dir), "--data", data, "--split", "all", "--out", str(out / (spec or "one")),
                "--reporter", "none", "--duplicate-threshold", "0", *(["--devices", spec] if spec else [])])
        evaluation = load_run(next((out / (spec or "one")).iterdir()))
        result[f"evaluate{spec}"] = {"metrics": evaluation.metrics["conditions"]["clean"],
                                     "distribution": evaluation.distribution}

    # btk robustness: one degrader over 2 devices against none
    for spec in ("", "2"):
        invoke(["robustness", str(run_dir), "--degraders", "blur", "--plot", str(out / f"r{spec}.png"),
                *(["--devices", spec] if spec else [])])
        result[f"robustness{spec}"] = json.loads((run_dir / "robustness.json").read_text())

    # the weights sit on every device while scoring; the distribution is unset afterwards. 14 images in
    # batches of 8: the last batch of 6 is filled up to 8 and the fill dropped
    from dataclasses import replace
    run = load_run(run_dir)
    shape = (14, *run.input_shape)
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with run.scorer() as one:
        assert one.layout is None
        plain = replace(one, batch_size=8)(images)
    with run.scorer(devices="4") as four:
        assert len(four.layout["devices"]) == 4
        result["weight_devices"] = len(four.model.weights[0].value.sharding.device_set)
        split = replace(four, batch_size=6)(images)  # rounded up to 8
    result["after"] = keras.distribution.distribution() is None
    result["direct"] = [plain.tolist(), split.tolist()]
    print("RESULT " + json.dumps(result))
""")


@pytest.mark.slow
def test_evaluate_predict_and_robustness_stream_over_four_devices(tiny_sartaj_run, tmp_path):
    """A run trained on TensorFlow, scored under JAX on 4 virtual devices (every batch split over
    them, the last one padded) and on one: the same probabilities, metrics and sweep; the
    evaluation records its devices."""
    run_dir, data = tiny_sartaj_run("--set", "precision=float32")  # bfloat16 sums in another order differ by ~1e-3
    done = subprocess.run([sys.executable, "-c", SCORING, str(run_dir), str(data), str(tmp_path / "evals")],
                          env=_env(4), capture_output=True, text=True, timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    one, four = np.array(out["predict"]), np.array(out["predict4"])
    assert one.shape == four.shape == (12, 2)
    assert np.abs(one - four).max() < 1e-5
    assert out["evaluate4"]["distribution"]["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert out["evaluate"]["distribution"] is None
    for key in ("accuracy", "f1_macro", "auc_macro"):
        assert out["evaluate4"]["metrics"][key] == pytest.approx(out["evaluate"]["metrics"][key], abs=1e-9), key
    assert out["robustness2"]["clean"] == out["robustness"]["clean"]
    assert out["robustness2"]["degraders"] == out["robustness"]["degraders"]
    assert out["weight_devices"] == 4 and out["after"]
    plain, split = (np.array(x) for x in out["direct"])
    assert plain.shape == split.shape == (14, 2) and np.abs(plain - split).max() < 1e-5


def test_scoring_commands_refuse_bad_devices(tmp_path):
    """On TensorFlow (this process) several devices are refused in one line before the run or
    any image is read; auto and 1 are accepted."""
    from btk.distribute import check_devices

    (tmp_path / "data").mkdir()
    for args in (["predict", str(tmp_path), "--data", str(tmp_path / "data")], ["evaluate", str(tmp_path), "--data",
                 str(tmp_path / "data")], ["robustness", str(tmp_path)]):
        result = CliRunner().invoke(cli, [*args, "--devices", "2"])
        assert result.exit_code == 1, result.output
        errors = [x for x in result.output.splitlines() if x.startswith("Error:")]
        assert len(errors) == 1 and "needs the JAX backend" in errors[0], result.output
        assert "Traceback" not in result.output
    check_devices("auto")
    check_devices("1")


def test_a_scorer_fills_every_batch_to_one_shape_and_drops_the_fill():
    """Every network call gets a whole batch (so an image's answer never depends on its
    neighbours, and a batch splits over devices); the filling is dropped from the answers."""
    from btk.scoring import Scorer

    calls = []

    class Network:
        def predict_on_batch(self, x):
            calls.append(x.shape)
            return np.stack([x[:, 0, 0, 0], x[:, 0, 1, 0]], axis=1)

    images = np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2, 1)
    scorer = Scorer(Network(), 1.0, "none", ("a", "b"), ("a", "b"), "b", batch_size=4)
    out = scorer.outputs(images)
    assert calls == [(4, 2, 2, 1), (4, 2, 2, 1)]
    assert out.tolist() == [[4 * k, 4 * k + 1] for k in range(6)]
