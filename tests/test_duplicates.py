"""Exact and near-duplicate detection: made copies are found, different slices are not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from btk.duplicates import copy_mask, duplicate_clusters, find_pairs, fingerprint_all


def phantom_volume(seed: int = 0, n: int = 128, depth: int = 64) -> np.ndarray:
    """A head-like volume (depth x n x n, uint8): egg-shaped skull sloping along z, textured
    tissue, two ventricles and a lesion, so that axial slices differ as in a real head."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:depth, 0:n, 0:n].astype(np.float32)
    cz, cy, cx = depth / 2, n / 2, n / 2
    zz = (z - cz) / (0.5 * depth)
    egg = 1 + 0.25 * zz
    r = ((x - cx) / (0.38 * n * egg)) ** 2 + ((y - cy - 0.12 * n * zz) / (0.45 * n * egg)) ** 2 + zz ** 2
    vol = np.where(r < 1, 0.55, 0).astype(np.float32)
    vol[(r < 1) & (r > 0.85)] = 0.9
    texture = gaussian_filter(rng.normal(0, 1, vol.shape).astype(np.float32), 2)
    vol = np.where(r < 0.85, 0.5 + 0.12 * texture / texture.std(), vol)
    for side in (-1, 1):
        vol[((x - cx - side * 0.06 * n) / (0.03 * n)) ** 2 + ((y - cy) / (0.1 * n)) ** 2
            + ((z - cz - 4) / (0.2 * depth)) ** 2 < 1] = 0.1
    vol[((x - cx - 0.15 * n) / (0.08 * n)) ** 2 + ((y - cy + 0.1 * n) / (0.08 * n)) ** 2
        + ((z - cz + 6) / (0.12 * depth)) ** 2 < 1] = 0.85
    return np.clip(vol * 255, 0, 255).astype(np.uint8)


def made_copies(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    shift = np.float32([[1, 0, 2], [0, 1, 2]])
    return {
        "resized": cv2.resize(image, (int(w * 0.6), int(h * 0.6)), interpolation=cv2.INTER_AREA),
        "jpeg70": cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_GRAYSCALE),
        "brighter": np.clip(image.astype(int) + 40, 0, 255).astype(np.uint8),
        "shifted": cv2.warpAffine(image, shift, (w, h), borderMode=cv2.BORDER_REPLICATE),
    }


def _real(sartaj, n):
    files = sorted((sartaj / "Training").glob("*/*.jpg"))[:: 2870 // n][:n]
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def test_made_copies_of_real_images_are_found(sartaj):
    originals = _real(sartaj, 12)
    kinds = list(made_copies(originals[0]))
    copies = [made_copies(im)[k] for im in originals for k in kinds]
    pairs = find_pairs(fingerprint_all(copies), fingerprint_all(originals))
    found = {(i, j) for i, j, _, _ in pairs}
    for k, _ in enumerate(originals):
        for c, kind in enumerate(kinds):
            assert (k * len(kinds) + c, k) in found, f"{kind} copy of image {k} not found"
    wrong = [(i, j) for i, j in found if i // len(kinds) != j]
    assert wrong == []


def test_exact_copy_is_exact_and_others_are_near():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (96, 96), dtype=np.uint8), (0, 0), 2)
    fp = fingerprint_all([image, image.copy(), np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)])
    pairs = {(i, j): (kind, score) for i, j, kind, score in find_pairs(fp)}
    assert pairs[(0, 1)] == ("exact", 1.0)
    assert pairs[(0, 2)][0] == "near" and pairs[(0, 2)][1] >= 0.99


def test_slices_of_one_volume_are_not_copies():
    volume = phantom_volume()
    slices = [volume[k] for k in range(8, 56, 4)]  # 4 voxels apart, as thick axial slices
    fp = fingerprint_all(slices)
    assert find_pairs(fp) == []
    # ...while each slice's made copies still match it
    copies = [made_copies(s)["jpeg70"] for s in slices]
    assert copy_mask(fingerprint_all(copies), fp).all()


def test_clusters_join_copies_and_groups():
    volume = phantom_volume(1)
    images = [volume[10], volume[30], volume[10].copy(), volume[50]]
    clusters = duplicate_clusters(fingerprint_all(images), groups=np.array(["a", "b", "c", "b"]))
    assert clusters[0] == clusters[2]  # exact copies
    assert clusters[1] == clusters[3]  # one group
    assert len(set(clusters.tolist())) == 2


def _independent_exact_twins(sartaj):
    """Pixel-identical images found without hashing: bucket by (shape, pixel sum), then compare
    every pair in a bucket with np.array_equal."""
    def load(split):
        files = sorted((sartaj / split).glob("*/*.jpg"))
        return files, [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]

    _, itr = load("Training")
    _, ite = load("Testing")
    buckets: dict = {}
    for k, im in enumerate(itr):
        buckets.setdefault((im.shape, int(im.sum(dtype=np.int64))), []).append(k)
    test_twins = sum(any(np.array_equal(im, itr[k]) for k in buckets.get((im.shape, int(im.sum(dtype=np.int64))), []))
                     for im in ite)
    train_pairs = sum(np.array_equal(itr[a], itr[b]) for ks in buckets.values()
                      for i, a in enumerate(ks) for b in ks[i + 1:])
    return test_twins, train_pairs


@pytest.mark.slow
def test_sartaj_audit_numbers(sartaj, tmp_path):
    """The audit's numbers on the real dataset, the exact ones checked by an independent method."""
    import json

    from click.testing import CliRunner

    from btk.cli import cli

    result = CliRunner().invoke(cli, ["audit", "--data", str(sartaj), "--json", "--pairs", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # --json: pure JSON on standard output
    copies = summary["copies"]["Testing images with a copy in Training"]
    assert copies == {"exact_copy": 251, "near_copy_only": 12, "any_copy": 263, "copy_with_other_label": 2}
    assert summary["pairs"]["within Training"] == {"exact": 139, "near": 202, "labels_disagree": 2}
    assert summary["datasets"]["sartaj"]["class_counts"]["train"] == {
        "glioma_tumor": 826, "meningioma_tumor": 822, "no_tumor": 395, "pituitary_tumor": 827}
    assert summary["datasets"]["sartaj"]["unreadable"] == []
    assert _independent_exact_twins(sartaj) == (251, 139)
    assert (tmp_path / "p.csv").read_text().count("\n") == 1 + sum(
        v["exact"] + v["near"] for v in summary["pairs"].values())


def test_audit_counts_unreadable_files_and_keeps_going(image_folder, tmp_path):
    import json

    from click.testing import CliRunner

    from btk.cli import cli

    (image_folder / "a" / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(image_folder / "b" / "copy_of_a0.png"), cv2.imread(str(image_folder / "a" / "0.png")))
    result = CliRunner().invoke(cli, ["audit", "--data", str(image_folder), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # --json: pure JSON on standard output
    info = summary["datasets"]["data"]
    assert info["images"] == 13
    assert [u["source"] for u in info["unreadable"]] == ["a/broken.png"]
    assert summary["pairs"]["within all"] == {"exact": 1, "near": 0, "labels_disagree": 1}
    text = CliRunner().invoke(cli, ["audit", "--data", str(image_folder), "--against", str(image_folder)])
    assert text.exit_code == 0 and "1 unreadable file(s)" in text.output and "data vs data" in text.output


def test_audit_against_a_renamed_copy_compares_labels_only_after_mapping(image_folder, tmp_path):
    import json
    import shutil

    from click.testing import CliRunner

    from btk.cli import cli

    renamed = tmp_path / "renamed"
    for old, new in (("a", "alpha"), ("b", "beta"), ("c", "gamma")):
        shutil.copytree(image_folder / old, renamed / new)
    base = ["audit", "--data", str(image_folder), "--against", str(renamed), "--json"]
    scope = "data vs renamed"

    plain = CliRunner().invoke(cli, base)
    assert plain.exit_code == 0, plain.output
    summary = json.loads(plain.output)
    assert summary["pairs"][scope] == {"exact": 12, "near": 0, "labels_disagree": None}
    assert summary["copies"]["data images with a copy in renamed"]["any_copy"] == 12
    assert "class names differ" in summary["labels_not_compared"][scope]
    table = CliRunner().invoke(cli, base[:-1])
    assert "not compared" in table.output and "give --map" in table.output.replace("\n", " ")

    mapped = CliRunner().invoke(cli, [*base, "--map", "alpha=a", "--map", "beta=b", "--map", "gamma=c"])
    assert mapped.exit_code == 0, mapped.output
    summary = json.loads(mapped.output)
    assert summary["pairs"][scope] == {"exact": 12, "near": 0, "labels_disagree": 0}
    assert summary["copies"]["data images with a copy in renamed"]["copy_with_other_label"] == 0

    # one class relabelled in the copy: its four copies are the conflicts
    crossed = CliRunner().invoke(cli, [*base, "--map", "alpha=b", "--map", "beta=b", "--map", "gamma=c"])
    assert json.loads(crossed.output)["pairs"][scope]["labels_disagree"] == 4

    partial = CliRunner().invoke(cli, [*base, "--map", "alpha=a", "--map", "beta=b"])
    assert partial.exit_code == 1
    lines = partial.output.strip().splitlines()
    assert len(lines) == 1 and "renamed has a, b, gamma" in lines[0] and "data has a, b, c" in lines[0]
    assert "not in data: gamma" in lines[0]

    wrong = CliRunner().invoke(cli, [*base, "--map", "delta=a"])
    assert wrong.exit_code == 1 and "renamed does not have: delta" in wrong.output
    bad = CliRunner().invoke(cli, [*base, "--map", "alpha"])
    assert bad.exit_code == 1 and "SRC=DST" in bad.output
