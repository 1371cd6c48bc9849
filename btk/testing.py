"""The plugin contract kit: checks a plugin author runs on their own reader, degrader, model or
reporter, and pytest fixtures for them. The fixtures are opt-in: installing btk adds no pytest
plugin to anyone's sessions; a plugin's tests ask for them with ``pytest -p btk.testing`` or a
line in their ``conftest.py``::

    pytest_plugins = ["btk.testing"]

In a plugin's tests::

    from btk.testing import check_degrader

    def test_my_degrader():
        check_degrader(MY_DEGRADER, identity={"strength": 0})

and, with the fixtures opted in, ``btk_host`` (the plugin host with
everything installed), ``btk_sample_images`` (a uint8 batch of brain-like phantoms) and
``btk_sample_run`` (a finished run directory to report).

Each ``check_*`` raises ``AssertionError`` naming what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

from btk.types import ReadOptions


def sample_images(n: int = 4, size: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A uint8 batch (n x size x size x channels) of brain-like phantoms."""
    from btk.phantoms import CLASSES, make_phantom

    images = [make_phantom(CLASSES[k % 4], np.random.default_rng([seed, k]), size) for k in range(n)]
    batch = np.stack(images)[..., None]
    return np.repeat(batch, channels, axis=-1) if channels == 3 else batch


def check_reader(reader: Any, path: Path | None, options: ReadOptions | None = None, labelled: bool = True) -> int:
    """``reader`` scans ``path`` and every entry loads into well-formed samples: uint8 2D images
    of the requested size and channels, a label (when ``labelled``), a group id and a source.
    Returns the number of samples."""
    from btk.types import Entry, Sample

    options = options or ReadOptions(64, 1)
    for attr in ("name", "description", "scan", "load"):
        assert hasattr(reader, attr), f"reader has no '{attr}'"
    entries = reader.scan(path, options)
    assert isinstance(entries, list) and entries, f"reader '{reader.name}' found no entries at {path}"
    assert all(isinstance(e, Entry) for e in entries), "scan() must return btk.types.Entry objects"
    count = 0
    for entry in entries[:20]:
        samples = reader.load(entry, options)
        assert isinstance(samples, list) and samples, f"load() returned no samples for {entry.source}"
        for s in samples:
            assert isinstance(s, Sample), "load() must return btk.types.Sample objects"
            assert s.image.dtype == np.uint8, f"{s.source}: image dtype {s.image.dtype}, expected uint8"
            assert s.image.ndim in (2, 3), f"{s.source}: image shape {s.image.shape} is not 2D"
            if options.image_size:
                assert s.image.shape[:2] == (options.image_size, options.image_size), (
                    f"{s.source}: shape {s.image.shape}, expected {options.image_size} px")
            channels = 1 if s.image.ndim == 2 else s.image.shape[2]
            assert channels == options.channels, f"{s.source}: {channels} channels, expected {options.channels}"
            assert isinstance(s.group, str) and s.group, f"{s.source}: no group id"
            assert isinstance(s.source, str) and s.source, "a sample has no source"
            if labelled:
                assert s.label not in (None, ""), f"{s.source}: no label"
            count += 1
    return count


def check_degrader(degrader: Any, identity: dict[str, Any] | None = None,
                   stronger: dict[str, Any] | None = None) -> None:
    """``degrader`` keeps shape and dtype for grayscale and colour batches, is deterministic for a
    seed, is the identity at its ``identity`` setting, and changes the images at its default (or
    ``stronger``) setting."""
    for attr in ("name", "function", "params", "apply", "resolve"):
        assert hasattr(degrader, attr), f"degrader has no '{attr}'"
    for channels in (1, 3):
        images = sample_images(3, 64, channels)
        single = degrader.function(images[0], np.random.default_rng(0), **degrader.resolve(stronger))
        assert single.dtype == np.uint8 and single.shape == images[0].shape, (
            f"{degrader.name}: one {images[0].shape} uint8 image became {single.shape} {single.dtype}")
        out = degrader.apply(images, stronger, seed=7)
        assert out.shape == images.shape, f"{degrader.name}: shape {out.shape} != {images.shape}"
        assert out.dtype == np.uint8, f"{degrader.name}: dtype {out.dtype}, expected uint8"
        assert np.array_equal(out, degrader.apply(images, stronger, seed=7)), f"{degrader.name}: not deterministic"
        assert not np.array_equal(out, images), f"{degrader.name}: its default setting changes nothing"
        if identity is not None:
            same = degrader.apply(images, identity, seed=7)
            assert np.array_equal(same, images), f"{degrader.name}: not the identity at {identity}"


def check_model(spec: Any, input_shape: tuple[int, ...] | None = None, n_classes: int = 3,
                tmp: Path | None = None) -> None:
    """``spec`` builds a compiled model with a softmax over ``n_classes``, trains a step, predicts,
    saves to .keras and loads back with the same predictions. The model file goes into ``tmp``,
    or into a temporary folder that is removed afterwards."""
    import tempfile

    size = max(spec.min_image_size, 32)
    input_shape = input_shape or (size, size, 1)
    model = spec.build(input_shape, n_classes, {"learning_rate": None})
    assert getattr(model, "optimizer", None) is not None, f"model '{spec.name}' is not compiled"
    x = np.random.default_rng(0).random((4, *input_shape), dtype=np.float32)
    y = np.eye(n_classes, dtype=np.float32)[[0, 1, 2 % n_classes, 0]]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    p = np.asarray(model.predict(x, verbose=0))
    assert p.shape == (4, n_classes), f"model '{spec.name}': output shape {p.shape}, expected (4, {n_classes})"
    assert np.allclose(p.sum(axis=1), 1, atol=1e-4), f"model '{spec.name}': outputs are not probabilities"
    if tmp is not None:
        _check_reload(model, Path(tmp), x, p, spec.name)
    else:  # a folder of its own, removed afterwards
        with tempfile.TemporaryDirectory(prefix="btk-check-model-") as folder:
            _check_reload(model, Path(folder), x, p, spec.name)


def _check_reload(model: Any, folder: Path, x: np.ndarray, p: np.ndarray, name: str) -> None:
    """``model`` saved to ``folder`` as a run saves it (:func:`btk.checkpoint.save_model_file`:
    the network without optimizer state) loads back as a run loads it, with the same predictions
    ``p`` on ``x``."""
    import keras

    from btk.checkpoint import save_model_file

    save_model_file(model, folder / "model.keras")
    again = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
    assert np.allclose(np.asarray(again.predict(x, verbose=0)), p, atol=1e-5), f"model '{name}': reload differs"


def check_reporter(reporter: Any, run_dir: Path, expect_files: list[str] | None = None) -> str:
    """``reporter`` reports a finished run without error and writes the files it claims
    (``expect_files``, relative to the run directory). Returns what it printed."""
    from btk.render import out_console
    from btk.runs import load_run

    for attr in ("name", "report"):
        assert hasattr(reporter, attr), f"reporter has no '{attr}'"
    console = out_console(record=True, width=160)
    reporter.report(load_run(run_dir), console)
    for name in expect_files or []:
        path = Path(run_dir) / name
        assert path.exists() and path.stat().st_size > 0, f"reporter '{reporter.name}' did not write {name}"
    return console.export_text()


def make_run(parent: Path, name: str, y: np.ndarray, probs: dict[str, np.ndarray] | np.ndarray,
             classes: list[str], sources: list[str] | None = None, task: str = "multiclass",
             train_degrade: list[str] | None = None, examples: bool = True, seed: int | None = None,
             data: str = "DATA", evaluates: Path | None = None) -> Path:
    """Write ``parent/name`` as a finished run whose test predictions are ``probs`` (per
    condition, or one array for "clean"), for testing reporters; ``seed`` is recorded in its
    configuration when given; ``data``: the data folder it names. ``evaluates``: a run
    directory: write an evaluation of that run instead (``btk evaluate``'s record, all of
    ``data`` scored; ``parent`` is usually the run's ``evaluations`` folder)."""
    from btk.config import make_run_config
    from btk.metrics import evaluate
    from btk.run_files import RunWriter

    conditions = probs if isinstance(probs, dict) else {"clean": probs}
    sources = sources or [f"img{i:05d}.png" for i in range(len(y))]
    path = Path(parent) / name
    # the configuration as btk run records it (RunConfig.to_json, the recipe nested), so the run
    # loads as a real one: the same task, recipe and degradations on the typed record
    config = make_run_config("btk", recipe={"image_size": 64, "channels": 1, "model": "seed-cnn"}, task=task,
                             reader="folder", data=data, name=name, train_degrade=tuple(train_degrade or ()),
                             **({"seed": seed} if seed is not None else {}))
    evaluation = {"kind": "evaluation",
                  "evaluation": {"run": str(Path(evaluates).resolve()), "run_id": Path(evaluates).name, "data": data,
                                 "reader": "folder", "split": "all"}} if evaluates is not None else {}
    with RunWriter(path, kind="evaluation" if evaluates is not None else "run") as w:
        w.write_json("config.json", {
            **evaluation, "config": config.to_json(), "recipe": config.recipe.__dict__, "classes": classes,
            "input_shape": [64, 64, 1],
            "train_degrade": [{"name": d, "params": {}, "label": d} for d in (train_degrade or [])],
            "test_degrade": [], "plugins": {}, "versions": {}})
        w.write_json("history.json", {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.7],
                                       "val_accuracy": [0.45, 0.7]})
        rows = []
        for cond, p in conditions.items():
            rows += [[cond, s, classes[t], classes[int(q.argmax())], *[f"{v:.6f}" for v in q]]
                     for s, t, q in zip(sources, y, p)]
        w.write_csv("predictions.csv", ["condition", "source", "label", "predicted", *[f"p_{c}" for c in classes]],
                    rows)
        if examples:  # 8 example images under every condition, as btk run keeps them
            rng = np.random.default_rng(len(y))
            pick = np.arange(min(8, len(y)))
            # Any: with a dict of arrays, numpy's stubs would match **kwargs against allow_pickle
            np.savez_compressed(w.path("examples.npz"), sources=np.array(sources)[pick].astype(str),
                                **cast(dict[str, Any],
                                       {f"images/{c}": rng.integers(0, 256, (len(pick), 128, 128), dtype=np.uint8)
                                        for c in conditions}))
        w.write_json("metrics.json", {"conditions": {c: evaluate(y, p, classes) for c, p in conditions.items()},
                                      "collapsed": False, "counts": {"test": len(y)}, "skipped": []})
    return path


try:  # pytest fixtures, when pytest is present (``-p btk.testing`` or ``pytest_plugins`` loads them)
    import pytest

    @pytest.fixture
    def btk_host():
        """The plugin host with every installed plugin."""
        from btk.plugins import load_plugins

        return load_plugins()

    @pytest.fixture
    def btk_sample_images():
        """A uint8 batch of 4 brain-like phantoms, 64 x 64 x 3."""
        return sample_images()

    @pytest.fixture
    def btk_sample_run(tmp_path):
        """A finished run directory (3 classes, 60 test images, clean and blur) to report."""
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 60)
        p = rng.dirichlet(np.ones(3), 60)
        p[np.arange(60), y] += 0.5
        p /= p.sum(1, keepdims=True)
        return make_run(tmp_path, "sample-run", y, {"clean": p, "blur": p[::-1]}, ["a", "b", "c"])
except ImportError:  # pragma: no cover
    pass


ORTHANC_DICOMWEB_PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                            "/usr/lib/orthanc/libOrthancDicomWeb.so")
"""Where Debian's ``orthanc-dicomweb`` package puts the DICOMweb plugin."""


def orthanc_missing() -> str | None:
    """Why :func:`orthanc_server` cannot start here (``None``: it can): Orthanc or its DICOMweb
    plugin is not installed (Debian: ``apt-get install orthanc orthanc-dicomweb``)."""
    import shutil

    if not (shutil.which("Orthanc") or Path("/usr/sbin/Orthanc").exists()):
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not any(Path(p).exists() for p in ORTHANC_DICOMWEB_PLUGINS):
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


class OrthancServer:
    """A running Orthanc (:func:`orthanc_server`): ``url`` (REST API), ``dicomweb`` (its
    DICOMweb root), ``auth`` (user, password) or ``None``, and ``dicom_port``: the port of its
    DICOM server (AE title ``ORTHANC``), or ``None`` when it has none."""

    def __init__(self, url: str, auth: tuple[str, str] | None, dicom_port: int | None = None) -> None:
        self.url, self.auth, self.dicom_port = url, auth, dicom_port
        self.dicomweb = f"{url}/dicom-web"

    def upload(self, files: list[Path] | list[str]) -> list[str]:
        """Store DICOM files through the REST API; returns the Orthanc ids of the instances."""
        import requests

        ids = []
        for f in files:
            response = requests.post(f"{self.url}/instances", data=Path(f).read_bytes(), auth=self.auth, timeout=60)
            response.raise_for_status()
            ids.append(response.json()["ID"])
        return ids

    def get(self, path: str) -> Any:
        """``GET`` a REST resource (``/studies``, ``/instances/ID/simplified-tags``) as JSON."""
        import requests

        response = requests.get(f"{self.url}{path}", auth=self.auth, timeout=60)
        response.raise_for_status()
        return response.json()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def orthanc_server(folder: Path, auth: tuple[str, str] | None = None, timeout: float = 60.0,
                   modalities: dict[str, tuple[str, str, int]] | None = None, port: int | None = None,
                   lua: list[Path] | None = None, dicom: bool = False) -> Any:
    """A context manager: a fresh Orthanc with its DICOMweb plugin on 127.0.0.1 at a free port,
    storing in ``folder``, remote access off, with HTTP basic ``auth`` (user, password) if given;
    stopped on exit. Yields an :class:`OrthancServer`. ``modalities``: the DICOM nodes it may
    send to (name: (AE title, host, port)); its own AE title is ``ORTHANC``. ``port``: its HTTP
    port [a free one]. ``lua``: Lua scripts it runs (``LuaScripts``). ``dicom``: its DICOM server
    on too (C-STORE and C-FIND from the ``modalities``), on a free port.

    Raises:
        RuntimeError: Orthanc is missing (:func:`orthanc_missing`) or did not start in ``timeout`` s.
    """
    import contextlib
    import json
    import shutil
    import subprocess
    import time

    import requests

    @contextlib.contextmanager
    def run() -> Any:
        missing = orthanc_missing()
        if missing:
            raise RuntimeError(missing)
        folder.mkdir(parents=True, exist_ok=True)
        http_port, dicom_port = port or _free_port(), _free_port()
        plugin = next(p for p in ORTHANC_DICOMWEB_PLUGINS if Path(p).exists())
        config = {"Name": "btk", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
                  "HttpPort": http_port, "DicomServerEnabled": dicom, "DicomPort": dicom_port,
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": auth is not None,
                  "RegisteredUsers": {auth[0]: auth[1]} if auth else {}, "Plugins": [plugin],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "StableAge": 1, "DicomAet": "ORTHANC",
                  "DicomModalities": {name: list(node) for name, node in (modalities or {}).items()},
                  "LuaScripts": [str(Path(p).resolve()) for p in lua or []]}
        (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        log = open(folder / "orthanc.log", "w")  # noqa: SIM115 (closed when the server stops)
        process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if requests.get(f"{url}/system", auth=auth, timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start (see {folder / 'orthanc.log'})")
                time.sleep(0.2)
            yield OrthancServer(url, auth, dicom_port if dicom else None)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()

    return run()


SLURM_PROGRAMS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
"""What :func:`slurm_cluster` runs: Debian's ``slurm-wlm`` (daemons and client commands) and ``munge``."""

_SLURM_DONE = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "BOOT_FAIL", "DEADLINE")


def _slurm_program(name: str) -> str | None:
    import shutil

    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/usr/bin")
                                       if (p := Path(d) / name).exists()), None)


def slurm_missing() -> str | None:
    """Why :func:`slurm_cluster` cannot start here (``None``: it can): a Slurm or munge program is
    not installed (Debian: ``apt-get install slurm-wlm munge``), or this process is not root
    (slurmd starts each job as its user, which only root may do)."""
    import os

    absent = [name for name in SLURM_PROGRAMS if _slurm_program(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a one-node Slurm here needs root (slurmd starts the jobs as their user)"
    return None


class SlurmCluster:
    """A running one-node Slurm (:func:`slurm_cluster`): ``conf`` (its slurm.conf), ``env`` (this
    process's environment with ``SLURM_CONF`` pointing at it and no other ``SLURM_`` variable:
    what its client commands and its jobs need), ``cpus`` and ``memory`` (MB) of its node."""

    def __init__(self, conf: Path, env: dict[str, str], cpus: int, memory: int) -> None:
        self.conf, self.env, self.cpus, self.memory = conf, env, cpus, memory

    def run(self, *args: str, check: bool = True, timeout: float = 60.0) -> Any:
        """Run a Slurm command (``sbatch``, ``squeue``, ``scontrol``...) against this cluster;
        returns the ``subprocess.CompletedProcess`` (text). ``check``: raise ``RuntimeError`` on a
        non-zero exit, with what it printed."""
        import subprocess

        done = subprocess.run([_slurm_program(args[0]) or args[0], *args[1:]], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
        return done

    def shell(self, line: str, timeout: float = 60.0) -> str:
        """Run a line of shell (e.g. the submit line btk prints) with this cluster's environment;
        returns its standard output. Raises ``RuntimeError`` on a non-zero exit."""
        import subprocess

        done = subprocess.run(["bash", "-c", line], env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{line!r} exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def states(self, job_id: str) -> dict[str, str]:
        """The state of job ``job_id`` (each task of an array: ``ID_TASK``) as Slurm shows it:
        ``{job: state}``, a pending job whose dependency can never be met as
        ``DEPENDENCY_NEVER_SATISFIED``. Slurm forgets a finished job after ``MinJobAge`` (300 s)."""
        shown = self.run("scontrol", "--oneliner", "show", "job", job_id).stdout
        states = {}
        for text in shown.splitlines():
            fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
            if "JobId" not in fields:
                continue
            name = fields["JobId"] + (f"_{fields['ArrayTaskId']}" if fields.get("ArrayTaskId") else "")
            state = fields.get("JobState", "?")
            if state == "PENDING" and fields.get("Reason") == "DependencyNeverSatisfied":
                state = "DEPENDENCY_NEVER_SATISFIED"
            states[name] = state
        return states

    def wait(self, job_id: str, timeout: float = 300.0, poll: float = 0.5) -> dict[str, str]:
        """Wait until job ``job_id`` (every task of an array) has ended; returns :meth:`states`.

        Raises:
            TimeoutError: still running or pending after ``timeout`` s (its states in the message).
        """
        import time

        deadline = time.monotonic() + timeout
        while True:
            states = self.states(job_id)
            if states and all(s in _SLURM_DONE or s == "DEPENDENCY_NEVER_SATISFIED" for s in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm job {job_id} not done after {timeout:.0f} s: {states}")
            time.sleep(poll)


def slurm_cluster(folder: Path, timeout: float = 60.0) -> Any:
    """A context manager: a fresh one-node Slurm on loopback, its files in ``folder`` (its
    sockets and state in a short private folder under /tmp, removed on exit): a munge
    daemon with its own key and socket, ``slurmctld`` and ``slurmd`` in the foreground on free
    ports, a node ``localhost`` with this machine's CPUs and memory in one default partition
    ``debug``, jobs run as root, no accounting. Yields a :class:`SlurmCluster` once the node is
    idle; on exit every job is cancelled and the daemons stopped (killed if they linger), also
    when the body raised. Logs: ``folder/*.log``.

    Raises:
        RuntimeError: Slurm or munge is missing (:func:`slurm_missing`), or a daemon exited or the
            node was not idle within ``timeout`` s (the logs' last lines in the message).
    """
    import contextlib
    import os
    import shutil
    import subprocess
    import tempfile
    import time

    def tail(path: Path, lines: int = 8) -> str:
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"{path.name}: " + " | ".join(text[-lines:])

    @contextlib.contextmanager
    def run() -> Any:
        missing = slurm_missing()
        if missing:
            raise RuntimeError(missing)
        folder.mkdir(parents=True, exist_ok=True)
        # munged's socket and slurmd's step sockets need paths under 108 bytes (a Unix socket's
        # limit), which a deep temporary folder may exceed: they live in a short private folder
        # of their own, removed with the cluster
        short = Path(tempfile.mkdtemp(prefix="btk-slurm-", dir="/tmp" if Path("/tmp").is_dir() else None))
        munge = short / "munge"
        munge.mkdir(mode=0o700, exist_ok=True)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket = munge / "munge.socket"
        for name in ("state", "spool"):
            (short / name).mkdir(exist_ok=True)
        cpus = len(os.sched_getaffinity(0))
        memory = max(1, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9))
        settings = {
            "ClusterName": "btktest", "SlurmctldHost": "localhost(127.0.0.1)",
            "SlurmctldPort": _free_port(), "SlurmdPort": _free_port(),
            "SlurmUser": "root", "SlurmdUser": "root",
            "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={socket}",
            "StateSaveLocation": short / "state", "SlurmdSpoolDir": short / "spool",
            "SlurmctldPidFile": folder / "slurmctld.pid", "SlurmdPidFile": folder / "slurmd.pid",
            "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none", "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none", "MpiDefault": "none", "MailProg": "/bin/true",
            "SchedulerType": "sched/backfill", "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
            # the node as configured here, whatever slurmd counts (sockets, threads): never drained for a mismatch
            "SlurmdParameters": "config_overrides", "ReturnToService": 2,
            "NodeName": f"localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN",
            "PartitionName": "debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        }
        conf = folder / "slurm.conf"
        conf.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(conf)
        cluster = SlurmCluster(conf, env, cpus, memory)
        commands = {
            # --force: the socket's folder is private (munged asks for one everyone may enter)
            "munged": [_slurm_program("munged"), "--foreground", "--force", f"--socket={socket}",
                       f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
                       f"--seed-file={munge / 'munged.seed'}", f"--log-file={folder / 'munged.log'}"],
            "slurmctld": [_slurm_program("slurmctld"), "-D", "-f", str(conf)],
            "slurmd": [_slurm_program("slurmd"), "-D", "-N", "localhost", "-f", str(conf)],
        }
        processes: dict[str, subprocess.Popen] = {}
        logs = []
        try:
            for name, command in commands.items():
                log = open(folder / f"{name}.out.log", "w")  # noqa: SIM115 (closed when the cluster stops)
                logs.append(log)
                processes[name] = subprocess.Popen([str(c) for c in command], env=env, stdout=log,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                if name == "munged":
                    deadline = time.monotonic() + timeout
                    while not socket.exists():
                        if processes[name].poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"munged did not start: {tail(folder / 'munged.out.log')}")
                        time.sleep(0.1)
            deadline = time.monotonic() + timeout
            state = ""
            while state != "idle":
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited {process.returncode}: {tail(folder / f'{name}.out.log')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Slurm node is not idle after {timeout:.0f} s (state {state!r}): "
                                       f"{tail(folder / 'slurmd.out.log')}; {tail(folder / 'slurmctld.out.log')}")
                time.sleep(0.3)
                shown = cluster.run("sinfo", "--noheader", "--nodes=localhost", "--format=%T", check=False)
                state = shown.stdout.strip() if shown.returncode == 0 else ""  # "idle*": not responding yet
            yield cluster
        finally:
            if "slurmctld" in processes and processes["slurmctld"].poll() is None:
                with contextlib.suppress(Exception):  # no job left running once the daemons stop
                    cluster.run("scancel", "--user=root", check=False, timeout=20)
                    deadline = time.monotonic() + 20
                    while cluster.run("squeue", "--noheader", check=False).stdout.strip() and \
                            time.monotonic() < deadline:
                        time.sleep(0.3)
            for name in ("slurmd", "slurmctld", "munged"):
                if name not in processes:
                    continue
                process = processes[name]
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            for log in logs:
                log.close()
            shutil.rmtree(short, ignore_errors=True)

    return run()
