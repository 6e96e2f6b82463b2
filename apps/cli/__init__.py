"""The `glowai` command line: the third front end beside the demo and the studio.

`main.py` holds the parser and the analysis/evaluation commands; `commands.py` the data, filter,
training and app-launching commands. Entry point: `glowai = "apps.cli.main:entry"`.
"""
