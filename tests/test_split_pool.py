"""The validation split depends on the training images, the options and the seed only: a test
image that is a near copy of two training images does not link them into one group."""

from __future__ import annotations

import cv2
import numpy as np

from btk.config import make_run_config
from btk.dataset import Dataset
from btk.duplicates import fingerprint_all, shift_ncc
from btk.split import make_split, task_labels

CLASSES = ("a", "b", "c", "d")


def _field(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Smooth random field, zero mean, unit variance."""
    f = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 3)
    return (f - f.mean()) / f.std()


def _image(f: np.ndarray) -> np.ndarray:
    return np.clip(128 + 30 * f, 0, 255).astype(np.uint8)


def _bridged(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images A and B below the copy threshold of each other, and T a near copy of both."""
    base, n1, n2 = _field(rng), _field(rng), _field(rng)
    a = 0.35
    return _image(base + a * n1), _image(base + a * n2), _image(base + a * (n1 + n2) / 2)


def _dataset(train: list[tuple[str, str, np.ndarray]], test: list[tuple[str, str, np.ndarray]]) -> Dataset:
    rows = [(*r, "train") for r in train] + [(*r, "test") for r in test]
    return Dataset(images=np.stack([r[2] for r in rows])[..., None], labels=np.array([r[1] for r in rows]),
                   groups=np.array([r[0] for r in rows], dtype=object), sources=np.array([r[0] for r in rows]),
                   splits=np.array([r[3] for r in rows]))


def _split_sources(data: Dataset) -> dict[str, set[str]]:
    config = make_run_config(data="x", preset="fast", seed=3, recipe={"val_fraction": 0.25})
    y, _ = task_labels(data, "multiclass", "d")
    split = make_split(data, y, config)
    return {k: {str(data.sources[i]) for i in v} for k, v in split.items()}


def test_validation_split_does_not_depend_on_the_test_images():
    rng = np.random.default_rng(0)
    train, bridges, plain = [], [], []
    for k in range(40):
        label = CLASSES[k % 4]
        a, b, t = _bridged(rng)
        fp = fingerprint_all([a, b, t]).fine.astype(np.float32)
        assert shift_ncc(fp[0], fp[1]) < 0.95 and min(shift_ncc(fp[0], fp[2]), shift_ncc(fp[1], fp[2])) >= 0.95
        train += [(f"train/{k}a", label, a), (f"train/{k}b", label, b)]
        bridges.append((f"test/bridge{k}", label, t))
        plain.append((f"test/plain{k}", label, _image(_field(rng))))
    with_plain = _split_sources(_dataset(train, plain))
    with_bridges = _split_sources(_dataset(train, bridges))
    assert with_plain["val"] and with_plain["train"]
    assert with_plain["train"] == with_bridges["train"]
    assert with_plain["val"] == with_bridges["val"]


def test_without_a_declared_test_split_copies_stay_on_one_side():
    rng = np.random.default_rng(1)
    rows = []
    for k in range(40):
        image = _image(_field(rng))
        rows += [(f"img/{k}", CLASSES[k % 4], image), (f"img/{k}_copy", CLASSES[k % 4], image.copy())]
    data = _dataset(rows, [])
    data.splits[:] = "all"
    parts = _split_sources(data)
    side = {s: name for name, sources in parts.items() for s in sources}
    assert parts["test"] and parts["val"]
    for k in range(40):
        assert side[f"img/{k}"] == side[f"img/{k}_copy"]


def test_a_subsets_groups_from_the_whole_datas_pairs_equal_those_found_afresh(monkeypatch):
    """Once the whole data's pairs are found (a split without a declared test part), a pool's
    groups are read from them: the same groups as finding the pool's pairs alone, bridges left
    out (a bridge outside the pool never links two images inside it)."""
    from btk.split import split_groups

    rng = np.random.default_rng(2)
    rows = []
    for k in range(12):
        a, b, t = _bridged(rng)
        rows += [(f"{k}a", CLASSES[k % 4], a), (f"{k}b", CLASSES[k % 4], b), (f"{k}t", CLASSES[k % 4], t)]
    pool = np.array([i for i, r in enumerate(rows) if not r[0].endswith("t")])  # sorted, bridges out

    afresh = split_groups(_dataset(rows, []), 0.95, pool)
    reused = _dataset(rows, [])
    whole = split_groups(reused, 0.95)
    assert all(whole[i] == whole[i + 1] == whole[i + 2] for i in range(0, len(rows), 3))  # bridged: one group

    def no_search(*args, **kwargs):
        raise AssertionError("pairs searched again")

    monkeypatch.setattr("btk.split.find_pairs", no_search)
    from_whole = split_groups(reused, 0.95, pool)
    assert np.array_equal(from_whole, afresh)
    assert len(set(afresh.tolist())) == len(pool)  # without their bridge, A and B are apart
