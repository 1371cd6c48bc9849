"""btk: a plugin-based toolkit for classifying medical images, brain MRI first.

The public Python API mirrors the command line: every command is a thin layer over
functions importable from here, so a notebook can do what ``btk`` does.
"""

__version__ = "0.1.0"

from btk.errors import BtkError

__all__ = ["BtkError", "__version__"]
