"""The shift check (btk.shift): it fires on a shifted cohort and stays quiet on an exchangeable
one, gives no verdict on too few, counts a series once, never contradicts the labels, falls back
(saying so) for a run without reference features; and the scorer's features behind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from btk.conformal import Conformal, set_warnings
from btk.predict import PredictionTally, _Batcher
from btk.scoring import Scorer, set_conditions
from btk.shift import (
    CHOSEN,
    MIN_GROUPS,
    NO_FEATURES,
    TEST_NAMES,
    Reference,
    ShiftCheck,
    by_group,
    classifier_test,
    mahalanobis_test,
    read_reference,
    shift_check,
    shift_sentence,
)

CLASSES = ("glioma", "meningioma", "no_tumor", "pituitary")
OLD_RUN = Path(__file__).parent / "fixtures" / "run-ad61e95"
DIM = 16


def _features(rng: np.random.Generator, n: int, mean: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Features of ``n`` images: correlated Gaussians (a random mixing), moved by ``mean`` along
    every axis and stretched by ``scale``."""
    mixing = np.random.default_rng(99).normal(size=(DIM, DIM)) / np.sqrt(DIM)
    return (rng.normal(size=(n, DIM)) * scale + mean) @ mixing


def _probs(rng: np.random.Generator, n: int) -> np.ndarray:
    p = np.exp(rng.normal(size=(n, 4)) + np.eye(4)[rng.integers(0, 4, n)] * 2)
    return p / p.sum(axis=1, keepdims=True)


def _check(rng, cohort_features, groups=None, shortfalls=()):
    reference = Reference(_features(rng, 150), tuple(f"r{i}" for i in range(150)))
    n = len(cohort_features)
    return shift_check(reference, cohort_features, groups, _probs(rng, 150), _probs(rng, n), shortfalls)


@pytest.mark.parametrize("test", [mahalanobis_test, classifier_test])
def test_each_feature_test_fires_on_a_shifted_cohort_and_keeps_its_level_on_exchangeable_ones(test):
    rng = np.random.default_rng(0)
    ref = _features(rng, 120)
    assert test(ref, _features(rng, 60, mean=0.8))[0] < 1e-4  # another site: its features moved
    wider = test(ref, _features(rng, 60, scale=1.6))[0]  # spread wider, same mean
    if test is mahalanobis_test:
        assert wider < 1e-3
    else:
        assert wider > 0.01  # a linear classifier cannot see it: one reason it is not the chosen test
    p = np.array([test(_features(rng, 120), _features(rng, 60), seed)[0] for seed in range(40)])
    assert (p < 0.01).sum() <= 2  # 0.4 expected at the 1% level; 3 or more has probability < 0.01
    assert 0.3 < np.median(p) < 0.7  # p-values spread over (0, 1) under exchangeability


def test_the_verdict_fires_on_a_shifted_cohort_and_is_quiet_on_an_exchangeable_one():
    rng = np.random.default_rng(1)
    quiet = _check(rng, _features(rng, 80))
    assert quiet.verdict == "quiet" and quiet.test == CHOSEN and not quiet.fallback
    assert quiet.sentence().startswith(f"no shift seen ({TEST_NAMES[CHOSEN]}, p = ")
    assert "may still break the coverage promise" in quiet.sentence()
    fired = _check(rng, _features(rng, 80, mean=1.0))
    assert fired.differs and fired.p_value is not None and fired.p_value < 1e-6
    assert fired.sentence().startswith("this cohort differs from the calibration images (")
    assert ShiftCheck.from_json(fired.to_json()) == fired
    assert shift_sentence(fired.to_json()) == fired.sentence()


def test_below_the_minimum_cohort_no_verdict_is_given():
    rng = np.random.default_rng(2)
    for n in (1, MIN_GROUPS - 1):
        check = _check(rng, _features(rng, n, mean=3.0))  # even a far cohort: too few to test
        assert check.verdict == "none" and check.p_value is None and not check.differs
        assert check.sentence().startswith(f"no verdict on shift: {n} images; reference 150; at least {MIN_GROUPS}")
        assert "exchangeable" not in check.sentence() and "no shift seen" not in check.sentence()
    assert _check(rng, _features(rng, MIN_GROUPS)).verdict != "none"


def test_slices_of_one_series_count_once():
    rng = np.random.default_rng(3)
    series = np.repeat(_features(rng, MIN_GROUPS - 1), 12, axis=0)  # 19 series of 12 slices
    groups = [f"s{k}" for k in range(MIN_GROUPS - 1) for _ in range(12)]
    check = _check(rng, series + rng.normal(0, 0.01, series.shape), groups)
    assert (check.images, check.groups, check.verdict) == (228, MIN_GROUPS - 1, "none")
    assert "228 images in 19 series or groups, each counted once" in check.sentence()
    means = by_group(np.arange(6.0)[:, None], ["b", "a", "b", "c", "a", "b"])
    assert means.ravel().tolist() == [(0 + 2 + 5) / 3, (1 + 4) / 2, 3.0]  # in order of first appearance


def test_predict_keeps_each_image_with_its_series_for_the_check():
    tally = PredictionTally()
    batcher = _Batcher(lambda x: np.full((len(x), 2), 0.5), 4, ["a", "b"], tally, keep=True,
                       featurize=lambda x: (np.full((len(x), 2), 0.5), x.reshape(len(x), -1)[:, :3].astype(np.float32)))
    image = np.zeros((2, 2, 1), np.uint8)
    list(batcher.add("scan.dcm", [(k, image + k, None, "patient-7") for k in range(3)]))
    list(batcher.add("photo.jpg", [(None, image, None, "")]))
    list(batcher.finish())
    assert tally.groups == ["patient-7"] * 3 + ["photo.jpg"]
    assert np.concatenate(tally.features).shape == (4, 3) and tally.images == 4


def test_a_labelled_shortfall_and_the_label_free_part_never_contradict():
    rng = np.random.default_rng(4)
    short = ("no_tumor coverage 80.0% < 90% (100 images, binomial p = 0.001): this site is not exchangeable "
             "with the training data",)
    for cohort in (_features(rng, 80), _features(rng, 5)):  # quiet, and too few for the label-free test
        check = _check(rng, cohort, shortfalls=short)
        assert check.verdict == "differs" and check.differs
        assert "no shift seen" not in check.sentence() and "no sign" not in check.sentence()
        assert check.sentence().startswith("this cohort is not exchangeable with the calibration images: a class "
                                           "fell short of its coverage promise")
    # through the scorer's set metrics: a cohort whose no-tumour scans all look like gliomas to it
    probs = np.tile([0.1, 0.1, 0.7, 0.1], (200, 1))
    labels = np.repeat(np.arange(4), 50)
    scorer = Scorer(None, 1.0, "none", CLASSES, CLASSES, conformal=Conformal(CLASSES, probs, labels))
    cohort = np.tile([0.7, 0.1, 0.1, 0.1], (60, 1))
    record = set_conditions(scorer, np.full(60, 2), cohort, (0.9,))["shift"]
    assert record["verdict"] == "differs" and record["shortfalls"]
    warnings = set_warnings({"clean": {"shift": record, "sets": {}}})
    assert warnings == [record["sentence"]] and "no shift seen" not in record["sentence"]


def test_a_run_without_reference_features_falls_back_to_the_top_probability_and_says_so():
    assert not (OLD_RUN / "shift_reference.npz").exists() and read_reference(OLD_RUN) is None
    rng = np.random.default_rng(5)
    check = shift_check(None, None, None, _probs(rng, 100), _probs(rng, 40))
    assert check.test == "ks" and check.fallback == NO_FEATURES and check.verdict == "quiet"
    assert check.sentence().endswith(f"[{NO_FEATURES}]") and "keeps no features" in check.sentence()
    old = {"p_value": 0.83, "effect": 0.1, "images": 1, "reference": 60, "differs": False}  # btk's older record
    assert ShiftCheck.from_json(old).test == "ks" and "p = 0.83" in shift_sentence(old)


def test_the_reference_survives_its_file(tmp_path):
    reference = Reference(np.arange(12, dtype=np.float32).reshape(3, 4), ("a", "b", "a"))
    reference.write(tmp_path / "shift_reference.npz")
    back = read_reference(tmp_path)
    assert back is not None and back.groups == ("a", "b", "a") and np.array_equal(back.features, reference.features)


def test_the_scorer_gives_penultimate_features_of_a_plain_a_tta_and_an_ensemble_model():
    import keras

    from btk.ensemble import ensemble_model
    from btk.tta import with_tta

    def net(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(5, 3, activation="relu")(inputs))
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dropout(0.3)(x)))

    images = np.random.default_rng(6).integers(0, 255, (7, 8, 8, 1)).astype(np.uint8)
    plain = Scorer(net(1), 1 / 255, "none", ("a", "b"), ("a", "b"), batch_size=4)
    feats = plain.features(images)
    assert feats.shape == (7, 5) and (feats >= 0).all()  # the pooled ReLU features, not the 2 outputs
    assert np.allclose(plain.features(images[3:4]), feats[3:4], atol=1e-6)  # not its neighbours'
    assert np.allclose(Scorer(with_tta(plain.model), 1 / 255, "none", ("a", "b"), ("a", "b")).features(images),
                       feats, atol=1e-6)  # the image as it is, under test-time augmentation
    both = Scorer(ensemble_model([plain.model, net(2)]), 1 / 255, "none", ("a", "b"), ("a", "b"))
    assert both.features(images).shape == (7, 10) and np.allclose(both.features(images)[:, :5], feats, atol=1e-6)


def test_outputs_and_features_in_one_pass_are_the_numbers_of_two_passes():
    """A shift check asks for both; one pass of the network gives them, bit for bit the same as
    the outputs alone and the features alone (a plain network), and a TTA model or an ensemble
    falls back to two passes."""
    import keras

    from btk.ensemble import ensemble_model
    from btk.tta import with_tta

    def net(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(5, 3, activation="relu")(inputs))
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))

    images = np.random.default_rng(7).integers(0, 255, (9, 8, 8, 1)).astype(np.uint8)
    plain = Scorer(net(1), 1 / 255, "none", ("a", "b"), ("a", "b"), batch_size=4, temperature=1.3)
    for scorer in (plain, Scorer(with_tta(plain.model), 1 / 255, "none", ("a", "b"), ("a", "b"), batch_size=4),
                   Scorer(ensemble_model([plain.model, net(2)]), 1 / 255, "none", ("a", "b"), ("a", "b"))):
        outputs, features = scorer.outputs_and_features(images)
        assert np.array_equal(outputs, scorer.outputs(images))
        assert np.array_equal(features, scorer.features(images))
    probabilities, features = plain.probabilities_and_features(images)
    assert np.array_equal(probabilities, plain(images)) and features.shape == (9, 5)
