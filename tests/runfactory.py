"""Complete run directories with chosen predictions (see btk.testing.make_run)."""

from btk.testing import make_run  # noqa: F401
