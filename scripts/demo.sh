#!/usr/bin/env bash
# `make demo`: the inspection station end to end on a synthetic coil (no data or network needed), then the
# shipped NEU-CLS classifier on the real data in ../shared/data when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/steelscan
DATA=${STEELSCAN_DATA:-../shared/data}
OUT=${DEMO_OUT:-out/demo}
FRAMES=${DEMO_FRAMES:-200}
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. A SYNTHETIC coil: $FRAMES frames of 1600x256 with realistic defects and one periodic roll mark"
$S synth coil "$OUT/coil" --n "$FRAMES" --frame 1600x256 --overlap 16 --strip-width-mm 2200 --seed 7

step "2. Inspect it with the shipped segmenter (built-in 'severstal'): defects in strip coordinates, records"
$S inspect "$OUT/coil" --out "$OUT/inspection" --model severstal

step "3. Grade the defect list with the shipped example rules"
$S grade "$OUT/inspection/defects.json" --json "$OUT/inspection/grade.json"

step "4. The shipped NEU-CLS classifier (built-in neu-cls)"
if [[ -d $DATA/neu-cls ]]; then
  $S evaluate neu-cls --data "$DATA/neu-cls" --split val --json "$OUT/neu_cls_val.json"
else
  $S synth neu-cls "$OUT/synth-neu-cls" --n 60 --seed 0
  echo "(../shared/data absent: the model classifies SYNTHETIC images; accuracy here is on synthetic data)"
  $S evaluate neu-cls --data "$OUT/synth-neu-cls" --json "$OUT/neu_cls_synthetic.json"
fi

step "Done"
echo "coil report: $OUT/inspection/report/report.html"
echo "defect list: $OUT/inspection/defects.json (truth of the synthetic coil: $OUT/coil/defects_truth.json)"
