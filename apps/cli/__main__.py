"""`python -m apps.cli ...` runs `glowai ...`."""

from apps.cli.main import entry

entry()
