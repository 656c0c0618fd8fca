#!/usr/bin/env bash
# README's first command: set up .venv if needed, then restore the bundled noisy
# fluorescence sample with the command line and write a before/after PNG.
# Headless (no display needed). Output: demo_output/ (or the folder given with --out DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repository root
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
