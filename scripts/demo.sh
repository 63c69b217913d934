#!/usr/bin/env bash
# `make demo`: the best end-to-end path that exists so far, on the real data in ../shared/data when it is
# there, else on the project's own synthetic data (labelled synthetic in every output).
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/steelscan
DATA=${STEELSCAN_DATA:-../shared/data}
OUT=${DEMO_OUT:-out/demo}
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Synthetic strips in the real on-disk formats (the embedded default data)"
$S synth neu-cls "$OUT/synth-neu-cls" --n 60 --seed 0
$S synth severstal "$OUT/synth-severstal" --n 40 --seed 0

step "2. Class imbalance of the data"
if [[ -d $DATA/severstal-partial ]]; then
  $S stats "$DATA/severstal-partial" --format severstal --json "$OUT/severstal_stats.json" --plot "$OUT/severstal_stats.png"
else
  echo "(../shared/data absent: statistics of SYNTHETIC Severstal-format data)"
  $S stats "$OUT/synth-severstal" --format severstal --json "$OUT/severstal_stats.json" --plot "$OUT/severstal_stats.png"
fi

step "3. The shipped NEU-CLS classifier (built-in model neu-cls)"
if [[ -d $DATA/neu-cls ]]; then
  $S evaluate neu-cls --data "$DATA/neu-cls" --split val --json "$OUT/neu_cls_val.json"
  $S classify "$DATA/neu-cls/Cr_4.bmp" "$DATA/neu-cls/In_9.bmp" "$DATA/neu-cls/Pa_14.bmp" \
    "$DATA/neu-cls/PS_19.bmp" "$DATA/neu-cls/RS_24.bmp" "$DATA/neu-cls/Sc_29.bmp" --model neu-cls --csv "$OUT/classified.csv"
else
  echo "(../shared/data absent: the model classifies SYNTHETIC images; accuracy here is on synthetic data)"
  $S evaluate neu-cls --data "$OUT/synth-neu-cls" --json "$OUT/neu_cls_synthetic.json"
fi

step "4. The seed's SDD history: classical baselines on hand-crafted texture features"
if [[ -d $DATA/neu-cls ]]; then
  $S benchmark sdd-history --data "$DATA/neu-cls" --json "$OUT/sdd_history.json"
else
  echo "(skipped: needs ../shared/data/neu-cls)"
fi

step "Done: outputs in $OUT"
ls "$OUT"
