"""``btk predict --shard K/N`` and ``btk merge``: N processes, each predicting its share of the
inputs, give, merged, exactly the table of one unsharded ``btk predict``."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from btk.cli import cli


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_three_shares_in_three_processes_merge_into_the_unsharded_table(sartaj_small_run, sartaj_small, tmp_path):
    from conftest import one_line_refusal

    data = str(sartaj_small / "Testing")
    _ok("predict", str(sartaj_small_run), "--data", data, "--out", str(tmp_path / "whole"))
    [whole] = list((tmp_path / "whole").iterdir())
    shares = [subprocess.Popen([sys.executable, "-m", "btk", "predict", str(sartaj_small_run), "--data", data,
                                "--shard", f"{k}/3", "--out", str(tmp_path / "shares"), "--json"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in (1, 2, 3)]
    for process in shares:  # three at once, as three tasks of a job array
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    # each share's folder, in K order (their names, made at the same moment, say nothing of K)
    folders = sorted((tmp_path / "shares").iterdir(),
                     key=lambda f: json.loads((f / "predict.json").read_text())["shard"]["k"])
    sizes = [len((f / "predictions.csv").read_text().splitlines()) - 1 for f in folders]
    total = len((whole / "predictions.csv").read_text().splitlines()) - 1
    assert sum(sizes) == total and all(size > 0 for size in sizes)  # each share did part of the work
    _ok("merge", *map(str, reversed(folders)), "--out", str(tmp_path / "merged"))  # any order
    [merged] = list((tmp_path / "merged").iterdir())
    assert (merged / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()

    assert one_line_refusal(["merge", str(folders[0]), str(folders[2]), "--out", str(tmp_path / "m2")]) == \
        "Error: share(s) 2/3 missing"
    assert one_line_refusal(["merge", *map(str, folders), str(folders[1]), "--out", str(tmp_path / "m2")]) == \
        "Error: share 2/3 given 2 times"
    assert one_line_refusal(["merge", str(whole), "--out", str(tmp_path / "m2")]) == \
        f"Error: {whole}: predicted without --shard: nothing to merge it with"
    assert not (tmp_path / "m2").exists()
    assert one_line_refusal(["predict", str(sartaj_small_run), "--data", data, "--shard", "4/3"]) == \
        "Error: --shard 4/3: give K/N, the K-th of N shares (1 <= K <= N), e.g. --shard 2/8"
    assert one_line_refusal(["predict", str(sartaj_small_run), "--data", data, "--shard", "1/50"]) == \
        f"Error: --shard 1/50: no input in this share ({total} input(s) for 50 shares)"


def _claim_names(parent: str, start, count: int) -> list[str]:
    from pathlib import Path

    from btk.run_files import unique_dir

    start.wait()
    return [unique_dir(Path(parent), "20261208-000000-predict").name for _ in range(count)]


def test_processes_that_start_in_the_same_second_never_share_a_result_folder(tmp_path):
    """The tasks of a job array start together and name their folders by the second: each claim
    must still be its own (before, two shares wrote into one hidden folder and one failed)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start = context.Manager().Barrier(6)
    with context.Pool(6) as pool:
        names = [n for share in pool.starmap(_claim_names, [(str(tmp_path / "out"), start, 15)] * 6) for n in share]
    assert len(names) == 90 and len(set(names)) == 90
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f".{n}.partial" for n in names)
