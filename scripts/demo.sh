#!/usr/bin/env bash
# `make demo`: the inspection station end to end on a synthetic coil (no data or network needed): detect,
# merge, find the periodic roll mark, grade, report, and score the station against the coil's truth. Then,
# when ../shared/data is there, the whole chain (detector -> defect classifier) on real NEU-DET images laid
# out as a coil, and the shipped NEU-CLS classifier.
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/steelscan
DATA=${STEELSCAN_DATA:-../shared/data}
OUT=${DEMO_OUT:-out/demo}
FRAMES=${DEMO_FRAMES:-200}
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
SECONDS=0

step "1. A SYNTHETIC coil: $FRAMES frames of 1600x256 with realistic defects and one periodic roll mark"
$S synth coil "$OUT/coil" --n "$FRAMES" --frame 1600x256 --overlap 16 --strip-width-mm 2200 --seed 7

step "2. Inspect it with the shipped demo detector (built-in 'coil-demo', trained on other synthetic coils)"
$S inspect "$OUT/coil" --out "$OUT/inspection" --model coil-demo

step "3. The station against the coil's truth (recall and precision at IoU >= 0.3)"
$S evaluate-coil "$OUT/inspection" --truth "$OUT/coil/defects_truth.json" --json "$OUT/inspection/scores.json"

step "4. Grade the defect list again from defects.json (what a plant's MES would do)"
$S grade "$OUT/inspection/defects.json" --rules src/steelscan/rules/coil-demo.yaml --json "$OUT/inspection/grade.json"

if [[ -d $DATA/neu-det ]]; then
  step "5. REAL steel: NEU-DET validation images (never trained on) laid out as a coil, 8 per 1600x200 frame"
  $S synth neu-coil "$DATA/neu-det" "$OUT/neu-coil"
  step "6. The whole chain on it: detector (neu-det) -> defect classifier (neu-cls), graded by the NEU rules"
  $S inspect "$OUT/neu-coil" --out "$OUT/neu-inspection" --model neu-det --classifier neu-cls
  step "7. The station against the truth, beside the detector on the single images (real images, laid out as a coil)"
  $S evaluate-coil "$OUT/neu-inspection" --truth "$OUT/neu-coil/defects_truth.json" --baseline-model neu-det \
    --json "$OUT/neu-inspection/scores.json"
fi

step "8. The shipped NEU-CLS classifier (built-in neu-cls)"
if [[ -d $DATA/neu-cls ]]; then
  $S evaluate neu-cls --data "$DATA/neu-cls" --split val --json "$OUT/neu_cls_val.json"
else
  $S synth neu-cls "$OUT/synth-neu-cls" --n 60 --seed 0
  echo "(../shared/data absent: the model classifies SYNTHETIC images; accuracy here is on synthetic data)"
  $S evaluate neu-cls --data "$OUT/synth-neu-cls" --json "$OUT/neu_cls_synthetic.json"
fi

step "Done in ${SECONDS} s"
echo "coil report: $OUT/inspection/report/report.html"
echo "defect list: $OUT/inspection/defects.json (truth of the synthetic coil: $OUT/coil/defects_truth.json)"
if [[ -d $OUT/neu-inspection ]]; then echo "real-steel coil report: $OUT/neu-inspection/report/report.html"; fi
