#!/usr/bin/env bash
# The paper's study on the mini world, as docs/mini-study/ holds it: the four shipped mini sweeps
# (3 seeds, one learning-rate grid, every epoch evaluated, criterion declared in each file), each run
# into runs/mini-study/<name>/ (resumable: rerun after a kill) and reported into docs/mini-study/<name>/.
# About two hours on 2 CPU cores. Usage: scripts/mini_study.sh [names...]  (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} TOKENIZERS_PARALLELISM=false
LORASAFE=${LORASAFE:-.venv/bin/lorasafe}
for name in "${@:-lora-vs-full rank modules layers}"; do
  for n in $name; do
    "$LORASAFE" sweep run "configs/sweeps/mini-$n.yaml" --out "runs/mini-study/$n" --no-progress --no-report
    "$LORASAFE" report "runs/mini-study/$n" --out "docs/mini-study/$n"
    cp "runs/mini-study/$n/sweep.yaml" "docs/mini-study/$n/sweep.yaml"
  done
done
