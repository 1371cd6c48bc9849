"""The command line's output: no start-up lines of the ML backend in a fresh process (unless
debugging), other libraries' warnings hidden, and tables printed in full when standard output
is not a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from btk.cli import cli

ROOT = Path(__file__).resolve().parents[1]
BACKEND_WORDS = ("absl", "onednn", "i0000", "cpu_feature_guard", "tensorflow")


def _env(**extra: str) -> dict[str, str]:
    """A fresh process's environment: none of the test session's TensorFlow or debug settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "BTK_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def _backend_lines(text: str) -> list[str]:
    """Lines that mention the backend or its logging, but for btk's own "backend tensorflow" and
    its provenance line ("made by btk ..., keras 3.x on tensorflow 2.y, ...")."""
    return [line for line in text.splitlines() if not line.startswith("made by btk ")
            and any(w in line.lower().replace("backend tensorflow", "") for w in BACKEND_WORDS)]


def _btk(*args: str, code: str = "") -> subprocess.CompletedProcess:
    """``python -m btk ARGS`` in a fresh process; ``code`` runs first (to force an error)."""
    script = f"import sys\n{code}\nfrom btk.cli import main\nsys.argv = ['btk', *{list(args)!r}]\nmain()\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=300)


def test_the_backend_is_imported_without_a_line_on_standard_error():
    code = "from btk import quiet; quiet.install(); import keras; print(keras.backend.backend())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tensorflow"
    assert done.stderr == ""


FAIL_AFTER_THE_IMPORT = """
import btk.pipeline
def fail(*args, **kwargs):
    import keras
    raise RuntimeError("forced failure")
btk.pipeline.run_experiment = fail
"""


@pytest.mark.slow
def test_an_internal_error_is_one_line_and_debug_shows_its_traceback(image_folder):
    args = ["run", "--data", str(image_folder), "--image-size", "32", "--model", "small-cnn", "--epochs", "1"]
    plain = _btk(*args, code=FAIL_AFTER_THE_IMPORT)
    assert plain.returncode == 1
    assert "internal error: RuntimeError: forced failure" in plain.stderr
    assert "Traceback" not in plain.stderr
    assert _backend_lines(plain.stdout + plain.stderr) == []

    debug = _btk("--debug", *args, code=FAIL_AFTER_THE_IMPORT)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "RuntimeError: forced failure" in debug.stderr


@pytest.mark.slow
def test_commands_that_load_the_network_print_no_backend_lines(image_folder, tmp_path):
    runs = tmp_path / "runs"
    done = _btk("run", "--data", str(image_folder), "--image-size", "32", "--model", "small-cnn", "--epochs", "1",
                "--out", str(runs))
    assert done.returncode == 0, done.stderr
    assert _backend_lines(done.stdout + done.stderr) == []
    run = str(next(runs.iterdir()))
    for args in (["predict", run, "--data", str(image_folder / "a")], ["evaluate", run, "--data", str(image_folder)],
                 ["robustness", run, "--degraders", "blur"]):
        done = _btk(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert _backend_lines(done.stdout + done.stderr) == [], args


def test_other_libraries_warnings_are_hidden_and_btks_are_one_line(capsys, monkeypatch):
    from btk import quiet

    monkeypatch.delenv("BTK_DEBUG", raising=False)
    btk_file = str(Path(quiet.__file__))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", quiet._show_warning)
        warnings.warn_explicit("a deprecation inside a library", DeprecationWarning, "/site-packages/lib.py", 1)
        warnings.warn_explicit("the cache is stale\nsecond line", UserWarning, btk_file, 1)
        assert capsys.readouterr().err == "btk: warning: the cache is stale\n"
        monkeypatch.setenv("BTK_DEBUG", "1")
        warnings.warn_explicit("a deprecation inside a library", DeprecationWarning, "/site-packages/lib.py", 1)
        assert "DeprecationWarning: a deprecation inside a library" in capsys.readouterr().err


def test_tables_are_printed_in_full_when_not_on_a_terminal(image_folder, tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["run", "--data", str(image_folder), "--image-size", "32", "--model",
                                      "small-cnn", "--epochs", "1", "--out", str(runs)])
    assert result.exit_code == 0, result.output
    report = CliRunner().invoke(cli, ["report", str(next(runs.iterdir()))])
    assert report.exit_code == 0, report.output
    for output in (result.output, report.output):
        assert "…" not in output
        header = next(line for line in output.splitlines() if "accuracy" in line and "condition" in line)
        for name in ("condition", "accuracy", "95% CI", "balanced acc", "macro F1", "correct"):
            assert name in header
        row = next(line for line in output.splitlines() if line.startswith("│ clean"))
        cells = [c.strip() for c in row.strip("│").split("│")]
        accuracy, correct = float(cells[1]), cells[-1]
        n, m = map(int, re.fullmatch(r"(\d+)/(\d+)", correct).groups())
        assert m == 3 and round(100 * n / m, 1) == accuracy  # 3 of the 12 images are the test set
