#!/usr/bin/env bash
# How the shipped models were made. Steps 1 and the 2026-12-02 GMLMs: one 2-core AMD EPYC, 2 threads, fp32
# (no native bf16). Steps 1b, 2b, 3b (2026-12-03): a 2-core Intel Xeon with AMX, bf16 autocast (--autocast
# auto); the later steps name their machine. The shipped models: the AR model of step 1d, the GMLM of step 3l.
# Each step's exact arguments are also in the model's training.json ("args",
# "commands", "lineage"). The numbers are in the README and bench/results/models.md.
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

# --- 2026-12-03: the shipped models ----------------------------------------------------------------------
# 1b. The AR model continued on its own schedule (--schedule-offset: no second warm-up) for 55 minutes,
#     selected on val (CT2 beam 4: best = last 27.62, averaged 27.52), packed.
gmlm train --objective ar --out runs/ar2 --spm $SPM --encoder-layers 3 --decoder-layers 3 --init-from models/ar-en-de \
  --schedule-offset 2000 --max-tokens 2048 --lr 1e-3 --warmup 300 --val-every 500 --val-bleu-sentences 200 \
  --max-minutes 55 --threads 2 --no-progress
python bench/model_table.py --ar runs/ar2/best --ar runs/ar2/averaged --ar runs/ar2/last --beams 4 --splits val
gmlm export runs/ar2/best --pack models/ar-en-de --force

# 2b. Distillation by the new teacher (targets: 35.92 BLEU against the training references).
gmlm distill --teacher models/ar-en-de --out runs/distill.de --beam-size 4 --threads 2 --no-progress

# 3b. The GMLM (3+3, initialised from the new AR model, length loss weight 0.5), 42 minutes; selected on val
#     (engine T=4 K=3: last 22.0, best 21.78, averaged 21.71), packed.
gmlm train --objective gmlm --out runs/gmlm2 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill.de --init-from models/ar-en-de --max-tokens 2048 --lr 1e-3 --warmup 300 \
  --length-loss-weight 0.5 --val-every 500 --val-bleu-sentences 200 --max-minutes 42 --threads 2 --no-progress
python bench/model_table.py --gmlm runs/gmlm2/best --gmlm runs/gmlm2/averaged --gmlm runs/gmlm2/last \
  --gmlm-configs 4x3 --splits val
gmlm export runs/gmlm2/last --pack models/gmlm-en-de --force
python models/make_golden.py

# --- 2026-12-03, later: two experiments, neither shipped (cards in models/cards/) ---------------------------
# 4. A longer-target distillation (CTranslate2 length penalty 1.5, selected on val for the AR model: beam 4
#    28.02 at length ratio 0.999 against 27.63 at 0.935): targets 36.28 BLEU vs the references, ratio 0.999.
gmlm distill --teacher models/ar-en-de --out runs/distill15.de --beam-size 4 --length-penalty 1.5 --threads 2 --no-progress
# 5. 3+3 and 6+1 GMLMs on it, the shipped GMLM's recipe and 42 minutes each. Val, engine, early_stop off:
#    3+3 T=4 K=3 22.53 (shipped 3+3: 23.09), 6+1 17.80 at 1.45x the speed -> the shipped GMLM stays.
for layout in "3 3" "6 1"; do
  set -- $layout
  gmlm train --objective gmlm --out runs/g$1$2 --spm $SPM --encoder-layers $1 --decoder-layers $2 \
    --train-target runs/distill15.de --init-from models/ar-en-de --max-tokens 2048 --lr 1e-3 --warmup 300 \
    --length-loss-weight 0.5 --val-every 500 --val-bleu-sentences 200 --max-minutes 42 --threads 2 --no-progress
done
python bench/model_table.py --gmlm runs/g33/last --gmlm runs/g61/last --gmlm-configs 4x3,10x3 --splits val \
  --threads 2 --compute-type auto --batch1 200 --json bench/results/layouts.json

# --- 2026-12-03: the shipped AR model ----------------------------------------------------------
# 1c. The AR model of step 1b resumed from its step-4596 state (runs/ar2/state.pt) on 4096-token batches, the
#     same schedule, a linear cool-down planned to step 8596; --max-minutes (which counts the first 55) stopped
#     it at step 8352. Selected on val (CT2 beam 4: last 31.16, best 30.62, averaged 30.40), packed.
#     The shipped GMLM was distilled from the AR model of step 1b (its card: models/cards/ar-en-de-teacher.training.json,
#     its weights: models/ar-en-de at commit 520186e); steps 2b-3b above reproduce it only with that teacher.
gmlm train --objective ar --out runs/ar2 --resume --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --max-tokens 4096 --lr 1e-3 --warmup 300 --schedule-offset 2000 --max-steps 8596 --cooldown-steps 2500 \
  --val-every 500 --val-bleu-sentences 200 --max-minutes 160 --threads 2 --no-progress
python bench/model_table.py --ar runs/ar2/best --ar runs/ar2/averaged --ar runs/ar2/last --beams 1,4 \
  --length-penalties 1.0 --splits val --threads 2
gmlm export runs/ar2/last --pack models/ar-en-de --force
python models/make_golden.py

# --- 2026-12-03: a GMLM from the AR model of step 1c (a 2-core AMD EPYC with AVX512-BF16, no AMX; bf16 autocast) --
# 2c. Distillation by the AR model of step 1c (targets: 49.09 BLEU against the training references, ratio 0.937;
#     the same figures when rerun on 2026-12-04 on an AVX2-only EPYC).
gmlm distill --teacher models/ar-en-de --out runs/distill7.de --beam-size 4 --threads 2 --no-progress
# 3c. The GMLM (3+3) from the AR model of step 1c on it, 4096-token batches, a linear cool-down planned over the
#     last 2000 of 4400 steps. Its step-1000 checkpoint was packed (selected on val against the previous GMLM:
#     T=4 K=3, offset 1: 26.07 vs 25.01) and committed; the rest of that run was lost with its machine.
gmlm train --objective gmlm --out runs/gmlm9 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill7.de --init-from models/ar-en-de --max-tokens 4096 --lr 1e-3 --warmup 300 \
  --length-loss-weight 0.5 --val-every 500 --val-bleu-sentences 200 --max-steps 4400 --cooldown-steps 2000 \
  --max-minutes 120 --threads 2 --no-progress
gmlm export runs/gmlm9/last --pack models/gmlm-en-de --force     # runs/gmlm9/last = ckpt-1000

# --- 2026-12-04: the GMLM shipped until 2026-12-05 (a 2-core AMD EPYC with AVX2 only: fp32) ---------------------------
# 3d. The step-1000 pack of step 3c (models/gmlm-en-de at commit 290717f) continued on the same targets (runs/distill7.de
#     of step 2c, rerun here with identical figures): a fresh AdamW state, the inverse-sqrt schedule continued at
#     step 1000 (no second warm-up) with a linear cool-down to 0 over all 1200 steps; 98 minutes, validation loss
#     3.198 -> 3.113. Selected on val (engine float32, T=4 K=3 / T=10 K=3 at offset 1): last 27.89 / 29.42,
#     averaged (4 checkpoints) 27.89 / 29.19, step 900 27.76 / 29.23; the step-1000 pack: 26.07 at T=4 K=3.
gmlm train --objective gmlm --out runs/gmlm10 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill7.de --init-from models/gmlm-en-de --schedule-offset 1000 --max-tokens 4096 \
  --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 --max-steps 1200 \
  --cooldown-steps 1200 --max-minutes 115 --threads 2 --no-progress
python bench/model_table.py --gmlm runs/gmlm10/last --gmlm runs/gmlm10/averaged --gmlm runs/gmlm10/ckpt-900 \
  --gmlm-configs 4x3+1,10x3+1 --splits val --threads 2 --compute-type float32
gmlm export runs/gmlm10/last --pack models/gmlm-en-de --force   # runs/gmlm10/last = ckpt-1200
python models/make_golden.py

# --- 2026-12-05: the shipped GMLM (a 2-core AMD EPYC Zen 4 with AVX512-BF16, no AMX; bf16 autocast) -----
# 3e. The pack of step 3d continued on the same targets (runs/distill7.de of step 2c, rerun: identical figures) on a
#     second cool-down: a fresh AdamW state, the inverse-sqrt schedule continued at step 2200 (lr 3.7e-4, no warm-up),
#     linear to 0 over 1800 steps; 34 minutes, validation loss 3.224 after the restart -> 3.106. Selected on val
#     (engine float32, T=4 K=3 / T=10 K=3 at offset 1): last 28.65 / 29.82, step 1500 28.35 / 29.43, averaged
#     28.41 / 29.54; step 3d's model 27.89 / 29.42. Offset 0 / 1 / 2 on val: 27.86 / 28.65 / 28.45 and
#     29.30 / 29.82 / 29.14.
gmlm distill --teacher models/ar-en-de --out runs/distill7.de --beam-size 4 --threads 2 --no-progress
gmlm train --objective gmlm --out runs/gmlm11 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill7.de --init-from models/gmlm-en-de --schedule-offset 2200 --max-tokens 4096 \
  --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 --max-steps 1800 \
  --cooldown-steps 1800 --max-minutes 55 --threads 2 --no-progress
python bench/model_table.py --gmlm models/gmlm-en-de --gmlm runs/gmlm11/last --gmlm runs/gmlm11/ckpt-1500 \
  --gmlm runs/gmlm11/averaged --gmlm-configs 4x3+1,10x3+1 --splits val --threads 2 --compute-type float32
python bench/model_table.py --gmlm runs/gmlm11/last --gmlm-configs 4x3+0,4x3+2,10x3+0,10x3+2 --splits val \
  --threads 2 --compute-type float32
gmlm export runs/gmlm11/last --pack models/gmlm-en-de --force   # runs/gmlm11/last = ckpt-1800
python models/make_golden.py

# --- 2026-12-05: the shipped GMLM (a 2-core AMD EPYC Zen 4, bf16 autocast) ---------------------
# 3f. Cycle 4: the pack of step 3e continued the same way at step 4000 (lr 2.7e-4), stopped by --max-minutes at step
#     2156 of 2300; the average of its last 5 checkpoints was committed as a candidate (1a35806; card:
#     models/cards/gmlm-en-de-2026-12-05-cycle4.training.json). Val T=4 K=3 / T=6 K=2 / T=10 K=3: 29.36 / 29.25 / 30.02.
gmlm train --objective gmlm --out runs/gmlm12 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill7.de --init-from models/gmlm-en-de --schedule-offset 4000 --max-tokens 4096 \
  --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 --max-steps 2300 \
  --cooldown-steps 2300 --max-minutes 45 --threads 2 --no-progress
gmlm export runs/gmlm12/averaged --pack runs/gmlm-en-de-2026-12-05-cycle4
# 3g. Cycle 5, shipped: the cycle-4 pack continued at step 6300 (lr 2.2e-4), ramped up over 200 steps, a cool-down
#     over all 2800 steps (54 minutes). Val (engine float32): last 29.30 / 29.46 / 30.41 at T=4 K=3 / T=6 K=2 /
#     T=10 K=3, the average of the last 5 checkpoints 29.32 / 29.40 / 30.44 (tied; the last has the lower
#     validation loss, 3.118 vs 3.127). The sweep that chose the defaults T=5 K=2 (README "Decoding defaults").
gmlm train --objective gmlm --out runs/gmlm13 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill7.de --init-from runs/gmlm-en-de-2026-12-05-cycle4 --schedule-offset 6300 --restart-warmup 200 \
  --max-tokens 4096 --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 \
  --max-steps 2800 --cooldown-steps 2800 --max-minutes 58 --threads 2 --no-progress
python bench/model_table.py --gmlm runs/gmlm13/last --gmlm runs/gmlm13/averaged --gmlm-configs 4x3,6x2,10x3 \
  --splits val --threads 2 --compute-type float32
python bench/model_table.py --gmlm runs/gmlm13/last --splits val --threads 2 --compute-type float32 \
  --gmlm-configs 4x2,5x2,5x3,6x3,6x4,8x2,8x3,10x2,10x5,12x2,6x2+0,6x2+2,4x3+2,5x2+0,5x2+2
gmlm export runs/gmlm13/last --pack models/gmlm-en-de --force   # runs/gmlm13/last = ckpt-2800
python models/make_golden.py

# --- 2026-12-05: the shipped AR model, a regularised run from scratch (a 2-core AMD EPYC Zen 4, bf16 autocast) ---
# 1d. Dropout 0.3 on embeddings, residual branches and final norms, 0.1 on attention probabilities and feed-forward
#     hidden units; 10000 steps of 4096-token batches with a linear cool-down over the last 3000; about 4 hours,
#     so run in pieces: the same command with --resume continues exactly (state.pt is written at every validation).
#     It was first started with --max-steps 4500 --cooldown-steps 1800 and resumed at step 2000 with the plan below
#     (the schedule before step 2700 is the same). Then: select on val (bench/model_table.py on
#     runs/ar5/{last,best,averaged}, --beams 1,4 --length-penalties 1.0,1.5), pack, re-distill, retrain the GMLM.
gmlm train --objective ar --out runs/ar5 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --dropout 0.3 --attention-dropout 0.1 --activation-dropout 0.1 --max-tokens 4096 --lr 1e-3 --warmup 300 \
  --max-steps 10000 --cooldown-steps 3000 --val-every 500 --val-bleu-sentences 200 --max-minutes 400 \
  --threads 2 --no-progress --resume
# the run reached step 10000 (246 minutes in all; validation loss 1.772). Selected on val (CTranslate2
# float32, greedy / beam 4 / beam 4 lp 1.5): last 34.62 / 35.81 / 36.32, averaged 34.19 / 35.19 / 35.70; best = last.
python bench/model_table.py --ar runs/ar5/last --ar runs/ar5/averaged --beams 1,4 --length-penalties 1.0,1.5 \
  --splits val --threads 2
gmlm export runs/ar5/last --pack models/ar-en-de --force
python models/make_golden.py
python bench/model_table.py --ar models/ar-en-de --beams 1,4 --length-penalties 1.0,1.5,2.0 --splits val,test2016 \
  --threads 1 --json bench/results/models_ar.json
# 3h. Cycle 6 (shipped until cycle 7): re-distilled from the new AR model (targets 39.51 BLEU against the training references, ratio
#     0.937), the cycle-5 pack continued at step 9100 for 1800 steps (37 minutes). Val (engine float32) T=4 K=3 /
#     T=5 K=2 / T=10 K=5: last 31.16 / 30.84 / 32.27, averaged 31.01 / 30.87 / 31.85.
gmlm distill --teacher models/ar-en-de --out runs/distill8.de --beam-size 4 --threads 2 --no-progress
gmlm train --objective gmlm --out runs/gmlm14 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill8.de --init-from models/gmlm-en-de --schedule-offset 9100 --restart-warmup 200 \
  --max-tokens 4096 --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 \
  --max-steps 1800 --cooldown-steps 1800 --max-minutes 38 --threads 2 --no-progress
python bench/model_table.py --gmlm runs/gmlm14/last --gmlm runs/gmlm14/averaged --gmlm-configs 4x3,5x2,10x5 \
  --splits val --threads 2 --compute-type float32
gmlm export runs/gmlm14/last --pack models/gmlm-en-de --force
python models/make_golden.py
# 3i. Cycle 7, shipped (2026-12-05): the cycle-6 pack continued on the same targets at step 10900 for 3000
#     steps (59 minutes, bf16). Val (engine float32) T=4 K=3 / T=5 K=2 / T=10 K=5: last 31.77 / 31.79 / 32.84,
#     averaged 31.94 / 31.64 / 32.30, best (step 2700) 32.17 / 31.46 / 32.63. Then the decoding-defaults sweep on val
#     (README "Decoding defaults"), which moved the defaults to T=8 K=2.
gmlm train --objective gmlm --out runs/gmlm15 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill8.de --init-from models/gmlm-en-de --schedule-offset 10900 --restart-warmup 200 \
  --max-tokens 4096 --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 \
  --max-steps 3000 --cooldown-steps 3000 --max-minutes 64 --threads 2 --no-progress
python bench/model_table.py --gmlm runs/gmlm15/last --gmlm runs/gmlm15/averaged --gmlm runs/gmlm15/best \
  --gmlm-configs 4x3,5x2,10x5 --splits val --threads 2 --compute-type float32
gmlm export runs/gmlm15/last --pack models/gmlm-en-de --force
python bench/model_table.py --gmlm models/gmlm-en-de --gmlm-configs \
  3x3,4x2,4x3,5x2,5x3,6x2,6x3,7x2,8x2,8x3,10x3,10x5,4x3+0,4x3+2,5x2+0,5x2+2,6x2+2,8x2+0,8x2+2 \
  --splits val --threads 2 --compute-type float32
python models/make_golden.py

# --- 2026-12-06: glancing training, measured, not shipped (a 2-core Intel Xeon with AMX, bf16 autocast) ---
# 3j. the cycle-7 pack continued for 1400 steps with glancing masks for half of each batch
#     (GLAT, docs/training.md), and a control with the same schedule and no glancing. Val (engine float32,
#     T=1 K=1 / T=2 K=1 / T=4 K=1 / T=8 K=2): shipped 26.28 / 29.07 / 30.81 / 32.43; glancing (last) 26.97 / 29.45 /
#     30.78 / 32.33; control (last) 26.58 / 29.48 / 30.88 / 32.55. Glancing helps the single pass (+0.39 over the
#     control) and costs the multi-pass rows (-0.10, -0.22) at 1.44x the time per step; neither is shipped (the
#     control's +0.1 at the defaults is within the noise of one run). Cards: models/cards/gmlm-en-de-glat*.json.
gmlm distill --teacher models/ar-en-de --out runs/distill8.de --beam-size 4 --threads 2 --no-progress
for run in "glat --glancing-ratio 0.5 --glancing-share 0.5" "ctrl"; do
  set -- $run
  out=$1; shift
  gmlm train --objective gmlm --out runs/$out --spm $SPM --encoder-layers 3 --decoder-layers 3 \
    --train-target runs/distill8.de --init-from models/gmlm-en-de --schedule-offset 13900 --restart-warmup 200 \
    --max-tokens 4096 --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 350 --val-bleu-sentences 200 \
    --max-steps 1400 --cooldown-steps 1400 --max-minutes 60 --threads 2 --no-progress "$@"
done
python bench/model_table.py --gmlm models/gmlm-en-de --gmlm runs/glat/last --gmlm runs/ctrl/last \
  --gmlm-configs 1x1,2x1,4x1,8x2 --splits val --threads 2 --compute-type float32

# --- 2026-12-06: the shipped GMLM (a 2-core Intel Xeon with AMX, bf16 autocast) --------------------------
# 3k. A new lineage from the shipped AR model's weights (step 1d) on its distillation (runs/distill8.de of step 3h/3j):
#     2400 steps, a cool-down over the last 1000, 31 minutes. Val (engine float32) T=1 K=1 / T=2 K=1 / T=4 K=1 / T=4 K=3 /
#     T=8 K=2: last 26.74 / 29.84 / 31.54 / 32.39 / 33.26; cycle 7 (shipped until now) 26.28 / 29.07 / 30.81 / 31.79 / 32.43.
gmlm train --objective gmlm --out runs/arinit --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill8.de --init-from models/ar-en-de --max-tokens 4096 --lr 1e-3 --warmup 300 \
  --length-loss-weight 0.5 --val-every 400 --val-bleu-sentences 200 --max-steps 2400 --cooldown-steps 1000 \
  --max-minutes 38 --threads 2 --no-progress
python bench/model_table.py --gmlm models/gmlm-en-de --gmlm runs/arinit/last --gmlm runs/arinit/ckpt-1200 \
  --gmlm-configs 1x1,2x1,4x1,4x3,8x2 --splits val --threads 2 --compute-type float32
gmlm export runs/arinit/last --pack models/gmlm-en-de --force   # shipped until step 3l
python models/make_golden.py

# 3l. (2-core Intel Xeon with AMX) Tried first: a 6+1 layout from the AR model's stretched blocks on the
#     same data and recipe (stopped at step 1200: 3.3-4.7 BLEU below 3+3 at the same step; card
#     models/cards/gmlm-en-de-6+1-stretch.training.json):
#       gmlm train --objective gmlm --out runs/g61s --spm $SPM --encoder-layers 6 --decoder-layers 1 \
#         --train-target runs/distill8.de --init-from models/ar-en-de --init-stretch-layers --max-tokens 4096 --lr 1e-3 \
#         --warmup 300 --length-loss-weight 0.5 --val-every 400 --val-bleu-sentences 200 --max-steps 2400 \
#         --cooldown-steps 1000 --max-minutes 38 --threads 2 --no-progress
#     Shipped: step 3k's run resumed with its optimizer state to step 6600 (cool-down over the last 1500), 57 more
#     minutes; the best checkpoint by the run's val BLEU (step 6000) packed. Val (engine float32) T=1 K=1 / T=2 K=1 /
#     T=4 K=1 / T=4 K=3 / T=8 K=2: 28.70 / 31.08 / 32.38 / 33.18 / 33.52 (step 3k: 26.74 / 29.84 / 31.55 / 32.40 / 33.26).
cp -r runs/arinit runs/arinit2
gmlm train --objective gmlm --out runs/arinit2 --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill8.de --init-from models/ar-en-de --max-tokens 4096 --lr 1e-3 --warmup 300 \
  --length-loss-weight 0.5 --val-every 400 --val-bleu-sentences 200 --max-steps 6600 --cooldown-steps 1500 \
  --max-minutes 100 --threads 2 --no-progress --resume
python bench/model_table.py --gmlm models/gmlm-en-de --gmlm runs/arinit2/last --gmlm runs/arinit2/averaged \
  --gmlm runs/arinit2/best --gmlm-configs 1x1,2x1,4x1,4x3,8x2 --splits val --threads 2 --compute-type float32 \
  --json bench/results/gmlm-2026-12-06b/select_val.json
gmlm export runs/arinit2/best --pack models/gmlm-en-de --force
python models/make_golden.py

# --- 2026-12-06 (night): two experiments on the shipped GMLM, measured (a 2-core AMD EPYC Zen 5, AVX512-BF16; bf16 autocast) --
# 3m. Correction training for update="all" decoding (docs/training.md, "Correction"): the shipped GMLM continued on the
#     same targets, half of each batch rebuilt with its own predictions and trained at every position; 60 minutes,
#     stopped at step 2136 of 2400. Val (engine float32) T=4 K=1: 32.07 with update="all" (last), 32.38 (averaged),
#     the shipped model 32.38: no gain; not shipped (docs/results.md, "Letting a pass fix any token").
gmlm distill --teacher models/ar-en-de --out runs/distill8.de --beam-size 4 --threads 2 --no-progress   # 39.51 BLEU, as before
gmlm train --objective gmlm --out runs/corr --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill8.de --init-from models/gmlm-en-de --schedule-offset 6000 --restart-warmup 200 \
  --max-tokens 4096 --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 400 --val-bleu-sentences 200 \
  --max-steps 2400 --cooldown-steps 2400 --max-minutes 60 --threads 2 --no-progress --correction 0.5
python bench/model_table.py --gmlm runs/corr/last --gmlm runs/corr/averaged --gmlm runs/corr/best \
  --gmlm-configs 1x1,2x1all,2x2all,4x1all,4x1,8x2all --splits val --threads 2 --compute-type float32 \
  --json bench/results/correction-2026-12-06/select_val.json
# 3n. Multi-step distillation (docs/training.md, "Multi-step distillation"): the shipped GMLM continued on the same
#     targets with the KL to its own frozen two-pass predictions added (weight 1); 1200 steps, 30 minutes. Val (engine
#     float32) T=1 K=1 / T=2 K=1 / T=4 K=1 / T=8 K=2: last 29.15 / 31.21 / 32.04 / 33.65, the shipped model 28.70 /
#     31.07 / 32.38 / 33.54: the single pass gains 0.45, four passes lose 0.34; not shipped.
gmlm train --objective gmlm --out runs/dims --spm $SPM --encoder-layers 3 --decoder-layers 3 \
  --train-target runs/distill8.de --init-from models/gmlm-en-de --schedule-offset 6000 --restart-warmup 200 \
  --max-tokens 4096 --lr 1e-3 --warmup 300 --length-loss-weight 0.5 --val-every 300 --val-bleu-sentences 200 \
  --max-steps 1200 --cooldown-steps 1200 --max-minutes 45 --threads 2 --no-progress --multistep 1.0
python bench/model_table.py --gmlm models/gmlm-en-de --gmlm runs/dims/last --gmlm runs/dims/averaged \
  --gmlm-configs 1x1,2x1,2x2,4x1,8x2 --splits val --threads 2 --compute-type float32 \
  --json bench/results/multistep-2026-12-06/select_val.json
# --- 2026-12-07: the ctc model (a 2-core AMD EPYC Zen 5, AVX512-BF16, bf16 autocast) ---------------------------------
# 3o. models/ctc-en-de: a ctc model (docs/decoding.md "CTC models") from the shipped GMLM's weights (its position table
#     stretched over a canvas of 2 x the source tokens; the length head dropped) on the AR model's distillation
#     (runs/distill8.de, step 3h), glancing over the Viterbi alignment for half of each batch. The run was paused and
#     resumed with --resume (it continues exactly) at step 600 and at step 800, each time with a shorter plan (first
#     --max-steps 3000 --cooldown-steps 1000, then 1400 / 700 from step 600, then the command below from step 800):
#     the learning rate before step 701 is the same under every plan; steps 701-800 ran 1-4 % above this command's.
#     (A resume at step 600 with --max-steps 2000 died at step 900: the code under it changed while it ran; its
#     300 steps are not in the model.) About 48 minutes of training in all.
gmlm train --objective ctc --out runs/ctc --spm $SPM --encoder-layers 3 --decoder-layers 3 --max-target-len 192 \
  --ctc-upsample 2 --train-target runs/distill8.de --init-from models/gmlm-en-de --max-tokens 4096 --lr 1e-3 \
  --warmup 300 --val-every 200 --val-bleu-sentences 200 --max-steps 1200 --cooldown-steps 500 --max-minutes 70 \
  --glancing-ratio 0.5 --glancing-share 0.5 --threads 2 --no-progress --resume
# 3p. Shipped (2026-12-07): step 3o's model continued for 1174 steps (62 minutes, the time cap; a linear cool-down
#     over the last 600 steps of 1200, the learning rate at step 1174 about 4 % of its peak) on the same distilled
#     targets, except that 3,621 of the 29,000 targets that repeat themselves while their reference does not train
#     on the reference (--repeat-fallback). Val, engine float32, one pass (blank_penalty 0 / 0.5 / 1 / 1.5 / 2):
#     34.11 / 34.38 / 34.44 / 34.51 / 34.37 BLEU, repetition 14.8 / 16.3 / 17.2 / 19.0 / 19.5 %; step 3o's model
#     33.68 at its default 2, 24.6 %. The default blank_penalty became 1.0. The run's checkpoint average: 34.33 at 1.0.
#     More passes hurt this model (val T=2 / T=4 at 1.0: 28.24 / 29.43): docs/results.md.
gmlm train --objective ctc --out runs/ctcnr --spm $SPM --encoder-layers 3 --decoder-layers 3 --max-target-len 192 \
  --ctc-upsample 2 --train-target runs/distill8.de --repeat-fallback --init-from runs/ctc/last \
  --schedule-offset 1200 --restart-warmup 100 --max-tokens 4096 --lr 1e-3 --warmup 300 --val-every 300 \
  --val-bleu-sentences 200 --max-steps 1200 --cooldown-steps 600 --max-minutes 62 --glancing-ratio 0.5 \
  --glancing-share 0.5 --threads 2 --no-progress
python bench/model_table.py --ar models/ar-en-de --beams 1,4 --gmlm runs/ctcnr/last --gmlm runs/ctcnr/averaged \
  --gmlm-configs 1x1bp0,1x1bp0.5,1x1bp1,1x1bp1.5,1x1bp2,2x1bp1,4x1bp1 --splits val --threads 2 --compute-type float32
gmlm export runs/ctcnr/last --pack models/ctc-en-de --force
python models/make_golden.py

# 3q. Tried, not shipped (2026-12-07): step 3p's model continued onto a 1.5x canvas (a cheaper pass; --max-target-len
#     144 = 192 x 1.5 / 2 resamples the position table so that canvas position j keeps its place in the source).
#     700 steps (26 minutes). Val, engine float32, one pass at the ctc defaults (blank_penalty 1.25, repeat_remask):
#     the checkpoint average 33.89 BLEU / 14.4 % repetition (last: 33.70), test2016 34.18 / 12.2 %; step 3p's 2x
#     model 34.50 / 34.53. At batch 1 (int8) it ran 1.49x AR greedy against the 2x model's 1.34x in the same run.
#     Card: models/cards/ctc-en-de-1.5x-2026-12-07.training.json; docs/results.md, "Why not 2x at batch 1".
gmlm train --objective ctc --out runs/ctc15 --spm $SPM --encoder-layers 3 --decoder-layers 3 --max-target-len 144 \
  --ctc-upsample 1.5 --train-target runs/distill8.de --repeat-fallback --init-from runs/ctcnr/last \
  --schedule-offset 1200 --restart-warmup 100 --max-tokens 4096 --lr 1e-3 --warmup 300 --val-every 200 \
  --val-bleu-sentences 200 --max-steps 700 --cooldown-steps 350 --max-minutes 45 --glancing-ratio 0.5 \
  --glancing-share 0.5 --threads 2 --no-progress
python bench/model_table.py --gmlm runs/ctc15/last --gmlm runs/ctc15/averaged \
  --gmlm-configs 1x1,1x1bp0.5,1x1bp1,1x1bp1.5,1x1bp2,1x1nr --splits val --threads 2 --compute-type float32
