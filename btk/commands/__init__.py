"""btk's commands, one module per verb (or small family of verbs). Each command parses its
options (:mod:`btk.commands.options`), makes one library call that does the whole job, and
renders the result (:mod:`btk.render`) or prints it as JSON. The group that holds them is
:data:`btk.cli.cli`."""

from __future__ import annotations

from btk.commands.adapt import adapt
from btk.commands.calibrate import calibrate
from btk.commands.data import audit, cache, degrade
from btk.commands.ensemble import ensemble
from btk.commands.estimate import estimate
from btk.commands.evaluate import evaluate
from btk.commands.explain import explain
from btk.commands.export import export
from btk.commands.listen import listen
from btk.commands.merge import merge
from btk.commands.plan import plan
from btk.commands.plugins import plugins
from btk.commands.predict import predict
from btk.commands.report import card, report
from btk.commands.rerun import rerun
from btk.commands.robustness import robustness
from btk.commands.run import resume, run
from btk.commands.select import select

COMMANDS = (run, resume, plan, ensemble, rerun, evaluate, predict, merge, export, listen, explain, robustness, adapt,
            calibrate, select, estimate, report, card, audit, degrade, cache, plugins)
"""Every built-in command, in the order ``btk --help`` lists them."""

__all__ = ["COMMANDS"]
