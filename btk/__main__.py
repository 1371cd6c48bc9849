"""Allow ``python -m btk``."""

from btk.cli import main

main()
