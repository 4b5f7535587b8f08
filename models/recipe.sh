#!/usr/bin/env bash
# How the shipped models were made (2026-12-02, one 2-core AMD EPYC, 2 threads, fp32: this CPU has no
# native bf16). Each step's exact arguments are also in the model's training.json ("args", "lineage").
# Runs for about 1 hour 50 minutes; the numbers it gives are in the README and bench/results/models.md.
set -euo pipefail
export GMLM_DATA_DIR=${GMLM_DATA_DIR:?set GMLM_DATA_DIR to the Multi30k folder}
SPM=models/ar-en-de/spm.model      # the joint 8k SentencePiece model of the earlier models (kept: same vocabulary)

# 1. The AR model (the benchmark's baseline and the teacher): 3+3 layers, d_model 256, 55 minutes.
gmlm train --objective ar --out runs/ar --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --max-tokens 2048 --lr 1e-3 --warmup 300 --val-every 200 --val-bleu-sentences 200 --max-minutes 55 \
  --threads 2 --no-progress
# ... resumed for 15 more minutes (the same schedule and optimizer state): the same arguments with
gmlm train --objective ar --out runs/ar --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --max-tokens 2048 --lr 1e-3 --warmup 300 --val-every 200 --val-bleu-sentences 200 --max-minutes 70 \
  --threads 2 --no-progress --resume
# selection on val (bench/model_table.py on runs/ar/{best,last,averaged}), then the float16 pack:
#   gmlm export runs/ar/<chosen> --pack models/ar-en-de --force

# 2. Distillation: the teacher's beam-4 translations of the training sources (BLEU vs the references
#    is written next to them, distill.de.json).
gmlm distill --teacher models/ar-en-de --out runs/distill.de --beam-size 4 --threads 2

# 3. The GMLMs: encoder (and the matching decoder layers) initialised from the AR model, trained on
#    the distilled targets; 3+3 and 5+1 layers for the same time; chosen on val with
#    bench/model_table.py --batch1 100 (3+3 shipped: gmlm export runs/gmlm-3-3/best --pack models/gmlm-en-de).
for layout in "3 3" "5 1"; do
  set -- $layout
  gmlm train --objective gmlm --out runs/gmlm-$1-$2 --spm $SPM --encoder-layers $1 --decoder-layers $2 \
    --train-target runs/distill.de --init-from models/ar-en-de --max-tokens 2048 --lr 1e-3 --warmup 300 \
    --val-every 200 --val-bleu-sentences 200 --max-minutes 15 --threads 2 --no-progress
done
