"""The demo's phantoms are distinct: no test phantom is a near copy of a training phantom at
btk's duplicate threshold (the first data a user sees is not leaky)."""

from __future__ import annotations

import numpy as np

from btk.config import make_run_config
from btk.duplicates import DEFAULT_THRESHOLD, copy_mask, fingerprint_all
from btk.pipeline import load_for_config
from btk.plugins import get_host


def test_demo_test_phantoms_have_no_copy_in_training():
    config = make_run_config()  # btk run without --data: the demo
    assert config.reader == "synthetic"
    data = load_for_config(config, get_host())
    fp = fingerprint_all(data.images)
    test, train = np.where(data.splits == "test")[0], np.where(data.splits != "test")[0]
    assert len(test) == 200 and len(train) == 600
    assert int(copy_mask(fp.subset(test), fp.subset(train), DEFAULT_THRESHOLD).sum()) == 0
