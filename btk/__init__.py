"""btk: a plugin-based toolkit for classifying medical images, brain MRI first.

Every command is a thin layer over one library function that does the whole job, so a notebook
gets the same answer as the command line:

=================  ================================================
command            function
=================  ================================================
``btk run``        :func:`btk.pipeline.train_run` (:func:`btk.pipeline.run_experiment` in one process)
``btk resume``     :func:`btk.resume.resume_run`
``btk plan``       :func:`btk.suite.run_suite`, :func:`btk.suite.write_plan`
``btk ensemble``   :func:`btk.ensemble.combine_paths`, :func:`btk.ensemble.train_ensemble`
``btk rerun``      :func:`btk.rerun.rerun`
``btk evaluate``   :func:`btk.evaluate.evaluate`
``btk predict``    :func:`btk.predict_output.predict_run` (:func:`btk.predict.predict_stream` row by row)
``btk explain``    :func:`btk.explain.explain_run`
``btk robustness`` :func:`btk.robustness.compare_runs`
``btk adapt``      :func:`btk.adapt.adapt_run`
``btk report``     :func:`btk.compare.gather_report`
``btk card``       :func:`btk.model_card.write_card`
``btk audit``      :func:`btk.audit.audit_paths`
``btk degrade``    :func:`btk.degraded_copies.degrade_dataset`
=================  ================================================

They all stand on three things, each written once: the run record (:func:`load_run`, a typed
:class:`btk.runs.Run`), the scorer (:meth:`btk.runs.Run.scorer`, :mod:`btk.scoring`) and the
configuration schema (:func:`make_run_config`, :mod:`btk.config`). The names in ``__all__`` are
importable from ``btk`` itself; they load their modules (and Keras) only when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from btk.errors import BtkError

_LAZY = {
    "load_run": "btk.runs", "make_run_config": "btk.config", "train_run": "btk.pipeline",
    "run_experiment": "btk.pipeline", "resume_run": "btk.resume", "run_suite": "btk.suite",
    "write_plan": "btk.suite", "combine_paths": "btk.ensemble", "train_ensemble": "btk.ensemble",
    "predict_run": "btk.predict_output", "explain_run": "btk.explain", "compare_runs": "btk.robustness",
    "adapt_run": "btk.adapt", "gather_report": "btk.compare", "write_card": "btk.model_card",
    "audit_paths": "btk.audit", "degrade_dataset": "btk.degraded_copies",
}
"""Public functions importable from ``btk``, by the module that holds each."""

__all__ = ["BtkError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'btk' has no attribute {name!r}")
