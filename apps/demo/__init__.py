"""Gradio demo: layout and wiring in one place, handlers that turn UI values into core calls.

Not built yet: see the Gradio demo issue. `app.py` at the repository root will build it and launch.
"""
