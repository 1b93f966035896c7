"""Allow ``python -m codexrelay``."""

from codexrelay.cli import main

main()
