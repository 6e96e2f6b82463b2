# The two README commands. Both set up .venv first (scripts/setup.sh: pinned, idempotent).
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: setup demo example test lint bench

setup:
	@bash scripts/setup.sh

## demo: the main job on the embedded defaults, offline: the Gradio demo on 127.0.0.1:7860.
demo: setup
	.venv/bin/glowai demo --host 127.0.0.1 --port 7860

## example: analyse a bundled portrait from the command line (JSON, overlay, report card in out/).
example: setup
	@mkdir -p out
	.venv/bin/glowai analyze data/examples/portrait-001.jpg --json out/portrait-001.json \
		--overlay out/portrait-001_overlay.png --card out/portrait-001_card.png

## test: lint, then the whole suite, offline.
test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/bench_analyze.py
	.venv/bin/python bench/bench_segmentation.py
