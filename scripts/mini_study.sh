#!/usr/bin/env bash
# The paper's study on the mini world, as docs/mini-study/ holds it: the four shipped mini sweeps
# (3 seeds, one learning-rate grid, every epoch evaluated, criterion declared in each file), each run
# into runs/mini-study/<name>/ (resumable: rerun after a kill) and reported into docs/mini-study/<name>/.
# 156 runs, about 35 seconds per LoRA run per core on the mini world v9 (AVX-512 AMD EPYC; a full
# fine-tuning run takes longer): under an hour on 2 CPU cores with JOBS=2 (each sweep's cells two at a time
# in worker processes of one thread each). An interrupted study, or one spread over machines, resumes from
# the records below.
#
# Usage: scripts/mini_study.sh [names...]           run (or resume) and report; default: all four
#        scripts/mini_study.sh --pack [names...]    write docs/mini-study/<name>/records.tar.gz
#        scripts/mini_study.sh --unpack [names...]  restore runs/mini-study/<name>/ from those records
#
# The records are every finished run's config, manifest, stage markers, metrics and weight geometry,
# without weights, generations or judgments (about 5 KB a LoRA run, 50 KB a full fine-tuning one): enough for `lorasafe report` to rebuild
# the folder, and for `sweep run` to skip the finished cells, so a study longer than one sitting resumes
# on another machine. Unfinished runs are left out (they resume from their checkpoints, which are not kept).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} TOKENIZERS_PARALLELISM=false
LORASAFE=${LORASAFE:-.venv/bin/lorasafe}
RUNS=${RUNS:-runs/mini-study}
JOBS=${JOBS:-1}  # cells at a time (`sweep run --jobs`)
mode=run
case "${1:-}" in --pack|--unpack) mode=${1#--}; shift ;; esac
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(lora-vs-full rank modules layers)

pack() {  # $1: sweep name
  local src="$RUNS/$1" dest="docs/mini-study/$1/records.tar.gz"
  [ -f "$src/sweep.yaml" ] || { echo "$src is not a sweep directory: run scripts/mini_study.sh $1 first" >&2; exit 2; }
  mkdir -p "docs/mini-study/$1"
  # Finished runs only (metrics.json written); sorted names and fixed metadata so equal records give an equal file.
  (cd "$src" && find runs -mindepth 2 -maxdepth 2 -name metrics.json -printf '%h\n' | sort |
     while read -r d; do find "$d" \( -path "$d/train" -o -path "$d/generations" -o -path "$d/judgments" \) -prune \
       -o -type f -print; done | sort | { echo sweep.yaml; [ -f plan.json ] && echo plan.json; cat; } |
     tar --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - --no-recursion -T - | gzip -n -9) > "$dest.tmp"
  mv "$dest.tmp" "$dest"
  echo "$dest: $(tar -tzf "$dest" | grep -c '/metrics.json$') finished runs, $(du -k "$dest" | cut -f1) KB"
}

unpack() {
  local src="docs/mini-study/$1/records.tar.gz" dest="$RUNS/$1"
  [ -f "$src" ] || { echo "$src does not exist: nothing to restore for $1" >&2; exit 2; }
  mkdir -p "$dest"
  tar -xzf "$src" -C "$dest" --skip-old-files  # never overwrite a run already here
  echo "$dest: $(find "$dest/runs" -mindepth 2 -maxdepth 2 -name metrics.json | wc -l) finished runs"
}

for n in "${names[@]}"; do
  case $mode in
    pack) pack "$n" ;;
    unpack) unpack "$n" ;;
    run)
      "$LORASAFE" sweep run "configs/sweeps/mini-$n.yaml" --out "$RUNS/$n" --no-progress --no-report --jobs "$JOBS"
      "$LORASAFE" report "$RUNS/$n" --out "docs/mini-study/$n"
      cp "$RUNS/$n/sweep.yaml" "docs/mini-study/$n/sweep.yaml"
      pack "$n" ;;
  esac
done
