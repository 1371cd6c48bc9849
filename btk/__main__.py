"""Allow ``python -m btk``."""

from btk.cli import main

if __name__ == "__main__":
    main()
