#!/usr/bin/env bash
# The exact commands behind the shipped weights and benchmarks/REPORT.md, in order. Steps 2-3 ran on one
# GPU (about 10 minutes in all), the rest on this project's 2-core CPU machine; every step writes its own
# run folder. The detector continues from the previous release's weights (git history of weights/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# 1. Leakage-free split (committed as splits/leakage_free.csv).
$PY tools/audit.py --out runs/audit --write-splits

# 2. Detector recipes at equal budget, held-out source br35h, two seeds, on a 256-px gray copy of the
#    data (small enough to move to the GPU machine); then seed 0 re-scored on the full-size images.
$PY tools/compact_data.py --out runs/compact256 --max-side 256 --gray --quality 75
for seed in 0 1; do
  MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --arms default mri boxsafe scanner --imgsz 256 \
      --epochs 20 --batch 64 --device 0 --workers 6 --jobs 2 --score held-out --seed $seed \
      --out runs/bench/compare_recipes_gpu_seed$seed
done
$PY benchmarks/compare_recipes.py --resume runs/bench/compare_recipes_gpu_seed0

# 3. Detector for shipping: the previous release's YOLOv5n (22 epochs, 320 px, `mri` preset) fine-tuned on
#    all three datasets with seed 0's choice, `scanner`, at 256 px for a 0.0756-hour budget (ultralytics
#    fitted 55 epochs to it): 77 epochs in all.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/detector.pt --hyp scanner --imgsz 256 \
    --epochs 60 --hours 0.0756 --batch 64 --device 0 --workers 12 --name ship

# 4. Classifier: retrained on the shipped detector's own proposals with as many crops as the previous head
#    (11,885), 6 epochs on the 2-core CPU, at 96 px (shipped) and 128 px (tied, costs more); both compared
#    with the previous head (96 px, hard negatives of the previous detector, in git history) on the same
#    detector, single-scale:
for size in 96 128; do
  $PY -m classify.train --arch tf_efficientnet_lite0 --input-size $size --epochs 6 --max-train-crops 11885 \
      --proposals runs/detect/ship/weights/best.pt --name lite0-$size-proposals
done
SHIP_DET=runs/detect/ship/weights/best.pt
for d in rf_mri4 br35h rsna_axial; do
  $PY tools/evaluate.py --data $d --split test --no-tta --det-weights $SHIP_DET \
      --out runs/eval-heads/old96-$d   # weights/classifier.pt is still the previous head before step 6
  $PY tools/evaluate.py --data $d --split test --no-tta --det-weights $SHIP_DET \
      --cls-weights runs/classify/lite0-128-proposals/best.pt --out runs/eval-heads/new128-$d
  $PY tools/evaluate.py --data $d --split test --no-tta --det-weights $SHIP_DET \
      --cls-weights runs/classify/lite0-96-proposals/best.pt --out runs/eval-heads/new96-$d
done
#    More epochs for the detector (17 on the CPU from the shipped weights) tied with it, so it was not shipped:
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model $SHIP_DET --hyp scanner --imgsz 256 \
    --epochs 30 --hours 1.25 --batch 32 --workers 2 --no-plots --name ship-cpu
$PY -m detect.val --weights runs/detect/ship-cpu/weights/best.pt --out runs/eval-det/ship-cpu

# 5. The seed experiment at 128 px, 8 epochs, same crops (with the held-out arm's proposals), trained
#    without br35h and scored on it; its Lite0 is also the held-out cascade's classifier in step 7.
$PY benchmarks/compare_classifiers.py --input-size 128 --epochs 8 --max-train-crops 2500 --fit-fusion \
    --proposals "runs/bench/compare_recipes_gpu_seed0/arms/scanner@256/weights/last.pt" \
    --out runs/bench/compare_classifiers_128

# 6. Ship: the detector of step 3 (ultralytics already saved it fp16, without optimizer state) and the
#    96-px classifier of step 4 (fp16, without optimizer state).
$PY tools/export_weights.py --detector runs/detect/ship/weights/best.pt --classifier runs/classify/lite0-96-proposals/best.pt

# 7. The cascade on the held-out source: detector and classifier both trained without br35h; boxes ranked
#    by the geometric mean (what the shipped classifier does) and by the fitted fusion.
HELD_DET="runs/bench/compare_recipes_gpu_seed0/arms/scanner@256/weights/last.pt"
HELD_CLS=runs/bench/compare_classifiers_128/tf_efficientnet_lite0/best.pt
$PY tools/evaluate.py --data br35h --split all --det-weights "$HELD_DET" --cls-weights $HELD_CLS --no-fusion --no-tta \
    --out runs/bench/heldout-cascade-geomean
$PY tools/evaluate.py --data br35h --split all --det-weights "$HELD_DET" --cls-weights $HELD_CLS --no-tta \
    --out runs/bench/heldout-cascade
#    Test-time augmentation A/B on the same source (and on the test splits: runs/eval-heads/new96-tta-*):
$PY tools/evaluate.py --data br35h --split all --det-weights "$HELD_DET" --cls-weights $HELD_CLS --no-fusion --tta \
    --out runs/bench/heldout-geomean-tta
for d in rf_mri4 br35h rsna_axial; do
  $PY tools/evaluate.py --data $d --split test --tta --cls-weights runs/classify/lite0-96-proposals/best.pt \
      --det-weights $SHIP_DET --out runs/eval-heads/new96-tta-$d
done
#    ... and on every recipe arm of seed 0; its cost on a quiet machine:
for arm in default mri boxsafe; do
  $PY tools/evaluate.py --data br35h --split all --det-weights "runs/bench/compare_recipes_gpu_seed0/arms/$arm@256/weights/last.pt" \
      --cls-weights $HELD_CLS --no-fusion --tta --out runs/bench/heldout-tta-$arm
done
for flag in --no-tta --tta; do  # the known-source side of the gap, for the same held-out arm
  $PY tools/evaluate.py --data rf_mri4 rsna_axial --split test --det-weights "$HELD_DET" --cls-weights $HELD_CLS \
      --no-fusion $flag --out runs/bench/indist-scanner$flag
done
$PY benchmarks/bench_cascade.py --backends pytorch --out runs/bench/cascade-single
$PY benchmarks/bench_cascade.py --tta --out runs/bench/cascade-tta
#    Classifier input size on the held-out source: Lite0 at 96 px, otherwise as step 5.
$PY benchmarks/compare_classifiers.py --only tf_efficientnet_lite0 --input-size 96 --epochs 8 --max-train-crops 2500 \
    --fit-fusion --proposals "$HELD_DET" --out runs/bench/compare_classifiers_96
$PY tools/evaluate.py --data br35h --split all --det-weights "$HELD_DET" --no-fusion --no-tta \
    --cls-weights runs/bench/compare_classifiers_96/tf_efficientnet_lite0/best.pt --out runs/bench/heldout-geomean-96

# 8. Input standardisation A/B.
#    Detector: plain ultralytics vs the same on standardised slices, equal budget on the 2-core CPU (20 epochs,
#    256 px, batch 64, seed 0, about 30 min an arm), trained on the compact copy and scored on the full-size images.
for seed in 0 1; do
  MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --arms default standardised --epochs 20 --batch 64 \
      --seed $seed --jobs 1 --workers 2 --score none --out runs/bench/compare_std_cpu_seed$seed
  $PY benchmarks/compare_recipes.py --resume runs/bench/compare_std_cpu_seed$seed
  for arm in default standardised; do  # with test-time augmentation, the shipped default
    $PY tools/evaluate.py --data br35h --split all --det-weights runs/bench/compare_std_cpu_seed$seed/arms/$arm@256/weights/last.pt \
        --cls-weights $HELD_CLS --no-fusion --tta --out runs/bench/heldout-tta-cpu$seed-$arm
  done
done
#    The known-source side of the standardised arm's gap (seed 0, test-time augmentation, as held-out above):
$PY tools/evaluate.py --data rf_mri4 rsna_axial --split test --no-fusion --tta --cls-weights $HELD_CLS \
    --det-weights runs/bench/compare_std_cpu_seed0/arms/standardised@256/weights/last.pt --out runs/bench/indist-std-cpu0--tta
#    Classifier: step 7's 96-px Lite0 again with --standardise (same crops, proposals, epochs and seed).
$PY benchmarks/compare_classifiers.py --only tf_efficientnet_lite0 --input-size 96 --epochs 8 --max-train-crops 2500 \
    --fit-fusion --proposals "$HELD_DET" --standardise --out runs/bench/compare_classifiers_96_std
for flag in "" --standardise; do  # both arms again with seed 1
  $PY benchmarks/compare_classifiers.py --only tf_efficientnet_lite0 --input-size 96 --epochs 8 --max-train-crops 2500 \
      --fit-fusion --proposals "$HELD_DET" --seed 1 $flag --out runs/bench/compare_classifiers_96_seed1${flag:+_std}
done
$PY tools/evaluate.py --data br35h --split all --det-weights "$HELD_DET" --no-fusion --no-tta \
    --cls-weights runs/bench/compare_classifiers_96_std/tf_efficientnet_lite0/best.pt --out runs/bench/heldout-geomean-96-std
#    Inference size for a detector trained at 256 px (held-out source, TTA): 320 px lost to 256 px on both arms.
for arm in scanner default; do
  $PY tools/evaluate.py --data br35h --split all --det-weights "runs/bench/compare_recipes_gpu_seed0/arms/$arm@256/weights/last.pt" \
      --cls-weights $HELD_CLS --no-fusion --tta --imgsz 320 --out runs/bench/heldout-tta-$arm-320
done

# 9. Converting the shipped detector to standardised input (not shipped): step 3's detector fine-tuned with
#    `standardised` for 17 epochs on the 2-core CPU, the settings of step 4's `scanner` run (runs/detect/ship-cpu),
#    its control at equal budget; scored on the test splits like the shipped one.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model $SHIP_DET --hyp standardised --imgsz 256 \
    --epochs 17 --batch 32 --workers 2 --no-plots --name ship-std-cpu
$PY -m detect.val --weights runs/detect/ship-std-cpu/weights/best.pt --out runs/eval-det/ship-std-cpu
for d in rf_mri4 br35h rsna_axial; do
  $PY tools/evaluate.py --data $d --split test --det-weights runs/detect/ship-std-cpu/weights/best.pt \
      --out runs/eval-ship-std/$d
done
#    The same conversion on the held-out side, two seeds: step 8's plain arm (20 epochs, no br35h) continued for 8
#    epochs with `default` or with `standardised` (equal budget), scored on all of br35h: one seed each way.
for seed in 0 1; do
  for arm in default standardised; do
    MRI_DATA_DIR=runs/compact256 $PY -m detect.train --hyp $arm --hold-out br35h --imgsz 256 --epochs 8 --batch 32 \
        --model runs/bench/compare_std_cpu_seed$seed/arms/default@256/weights/last.pt --workers 2 --no-plots \
        --seed $seed --name ft-heldout-s$seed-$arm
    for flag in --no-tta --tta; do
      $PY tools/evaluate.py --data br35h --split all --det-weights runs/detect/ft-heldout-s$seed-$arm/weights/last.pt \
          --cls-weights $HELD_CLS --no-fusion $flag --out runs/bench/heldout-ft-s$seed-$arm$flag
    done
  done
done

#    Mosaic 0.5 instead of ultralytics' 1.0, on top of `standardised` (seed 0, otherwise step 8's arm; scored like it).
mkdir -p runs/hyp && printf 'ultralytics:\n  mosaic: 0.5\nintensity: {}\ninput:\n  standardise: true\n' > runs/hyp/std-mosaic05.yaml
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --hold-out br35h --hyp runs/hyp/std-mosaic05.yaml --imgsz 256 --epochs 20 \
    --batch 64 --patience 20 --no-val --no-plots --workers 2 --seed 0 --project runs/bench/mosaic-cpu-seed0 --name std-mosaic05@256
for arm in "compare_std_cpu_seed0/arms/standardised@256" "mosaic-cpu-seed0/std-mosaic05@256"; do
  for flag in --no-tta --tta; do
    $PY tools/evaluate.py --data br35h --split all --det-weights "runs/bench/$arm/weights/last.pt" --cls-weights $HELD_CLS \
        --no-fusion $flag --out "runs/bench/heldout$flag-$(basename "$arm")"
  done
  $PY -m detect.val --weights "runs/bench/$arm/weights/last.pt" --data rf_mri4 rsna_axial --split test \
      --out "runs/bench/indist-$(basename "$arm")"
done

# A detector scored as it would ship: a classifier trained on its own proposals (step 4's command), the pair exported
# to runs/release-NAME, its cascade evaluated on each test split and the classifier on the test crops.
matched_pair() {  # DETECTOR_WEIGHTS NAME
  $PY -m classify.train --arch tf_efficientnet_lite0 --input-size 96 --epochs 6 --max-train-crops 11885 \
      --proposals "$1" --name "lite0-96-proposals-$2"
  $PY tools/export_weights.py --detector "$1" --classifier "runs/classify/lite0-96-proposals-$2/best.pt" \
      --out "runs/release-$2"
  for d in rf_mri4 br35h rsna_axial; do
    $PY tools/evaluate.py --data $d --split test --det-weights "runs/release-$2/detector.pt" \
        --cls-weights "runs/release-$2/classifier.pt" --out "runs/eval-release-$2/$d"
  done
  $PY -m classify.val --weights "runs/release-$2/classifier.pt" --out "runs/eval-release-$2/classify-val"
}

# A continued detector scored for the ship rule: on validation (whether it takes the candidate's place), on all test
# splits, and each test split's cascade at the shipped defaults.
score_cycle() {  # DETECTOR_WEIGHTS NAME
  $PY -m detect.val --weights "$1" --split val --out "runs/eval-det/$2-val"
  $PY -m detect.val --weights "$1" --out "runs/eval-det/$2"
  for d in rf_mri4 br35h rsna_axial; do
    $PY tools/evaluate.py --data $d --split test --det-weights "$1" --out "runs/eval-$2/$d"
  done
}

# 10. A detector from scratch with `standardised` (the recipe that beat plain ultralytics on the held-out source in
#     both seeds, step 8) at the plain baseline's budget on this 2-core CPU (1.38 h; 34 epochs at 256 px took 1.30 h),
#     scored like the shipped one; then more epochs from it, each cycle with a new schedule. None has met its ship
#     rule, so none is shipped (docs/generalisation.md, "Standardised from scratch on the CPU").
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 256 --epochs 34 --batch 32 \
    --workers 2 --no-plots --seed 0 --name std-scratch
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model runs/detect/std-scratch/weights/best.pt --hyp standardised \
    --imgsz 256 --epochs 25 --batch 32 --workers 2 --no-plots --seed 0 --name std-scratch-cont
#     A third cycle, fitted to 1.6 h (ultralytics fitted 41 epochs; 100 in all). Its decision rule, written before its
#     numbers: ship only above the baseline in both metrics, at most 0.005 below the shipped detector in either
#     (single-scale, all test splits), and every test split's cascade at >= 0.85 / 0.55. It missed (0.850 / 0.598;
#     br35h's cascade 0.823), so it is committed as weights/candidate/detector.pt for the next cycle to continue from.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model runs/detect/std-scratch-cont/weights/last.pt --hyp standardised \
    --imgsz 256 --hours 1.6 --batch 32 --workers 2 --no-plots --seed 0 --name std-scratch-cont2
cp runs/detect/std-scratch-cont2/weights/best.pt weights/candidate/detector.pt
#     A fourth cycle from it, fitted to 1.3 h with early stopping off (a first try at 1.9 h stopped after 21 epochs:
#     patience 20, then the default, counted from its first epoch, above the dip a new schedule's warm-up makes).
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised \
    --imgsz 256 --hours 1.3 --batch 32 --workers 2 --no-plots --seed 0 --patience 0 --name std-scratch-cont3
#     133 epochs in all: 0.852 / 0.604 on all test splits, but br35h's cascade 0.830, so the rule is missed again;
#     its validation fitness is above the previous candidate's, so it replaces it.
cp runs/detect/std-scratch-cont3/weights/best.pt weights/candidate/detector.pt
#     Scored again with a classifier trained on its own proposals (step 4's command), as a cascade ships. Rule, written
#     before: every split's cascade >= 0.85 / 0.55 and type accuracy >= 0.93 on rf_mri4 and rsna_axial. Missed on br35h
#     (0.830 again) and rsna_axial's type accuracy (0.923), so the shipped pair stays.
matched_pair runs/detect/std-scratch-cont3/weights/best.pt std4
#     A fifth cycle from the candidate, fitted to 1.25 h (32 epochs, 165 in all), under the fourth cycle's rule: 0.854 / 0.604
#     on all test splits, br35h's cascade 0.828, so not shipped; validation fitness 0.599 < 0.602, so the candidate stays.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised \
    --imgsz 256 --hours 1.25 --batch 32 --workers 2 --no-plots --seed 0 --patience 0 --name std-scratch-cont4
#     Then on one GPU (an H200): the 133-epoch candidate continued in one schedule, and yolov5s from scratch, side by
#     side, each fitted to 0.125 h (61 and 58 epochs; the 300 planned epochs make ultralytics pick MuSGD at lr 0.01,
#     where the CPU cycles above got AdamW at 0.002), under the same rule, written down again before the run.
#     The candidate: 0.867 / 0.601 on all test splits, br35h's cascade 0.845, so not shipped; its validation fitness
#     (0.612 > 0.602) makes it the candidate. yolov5s: 0.868 / 0.622, br35h's cascade 0.830: not shipped, and not kept
#     (it lost the model-size comparison below).
for model in runs/detect/std-scratch-cont3/weights/best.pt yolov5s; do
  name=std-gpu-cont; [ "$model" = yolov5s ] && name=std-gpu-s
  MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model $model --hyp standardised --imgsz 256 --epochs 300 \
      --hours 0.125 --batch 64 --device 0 --workers 7 --no-plots --seed 0 --patience 0 --name $name &
done
wait
cp runs/detect/std-gpu-cont/weights/best.pt weights/candidate/detector.pt
#     Model size at equal epochs on the held-out source. Rule, written before: yolov5s counts as better only with a
#     higher held-out mAP50-95 and no lower held-out mAP50. Trained on the GPU, scored on the CPU on the full-size
#     images. (It ran as two one-arm invocations at once, merged into one folder; this command does the same.)
MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --arms standardised standardised+yolov5s --epochs 20 \
    --batch 64 --device 0 --workers 7 --jobs 2 --score none --seed 0 --out runs/bench/heldout-size
$PY benchmarks/compare_recipes.py --resume runs/bench/heldout-size
#     A sixth schedule, on the CPU from the 194-epoch weights with the GPU run's settings (batch 64, MuSGD), same rule:
#     its best epoch on validation (the first of 21; fitness 0.606 < 0.612, so the candidate stays) passed the detector
#     part (0.868 / 0.598; cascades 0.867 / 0.863 / 0.871); with a classifier trained on its proposals rsna_axial's type
#     accuracy is 0.923 < 0.93, so the pair rule fails and the shipped pair stays.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised --imgsz 256 \
    --epochs 300 --hours 1.0 --batch 64 --workers 2 --no-plots --seed 0 --patience 0 --name std-cpu-cont6
matched_pair runs/detect/std-cpu-cont6/weights/best.pt c6
#     A seventh schedule from the 194-epoch weights without warm-up (`standardised-continue`: SGD from 0.002), batch
#     64, fitted to 1.3 h (33 epochs), same rule written before it: best epoch on validation the 13th (207 in all;
#     fitness 0.617 > 0.612, so it becomes the candidate); 0.867 / 0.601 on all test splits, but br35h's cascade 0.828,
#     so the rule fails at its second part and no matched classifier was trained.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised-continue \
    --imgsz 256 --epochs 30 --hours 1.3 --batch 64 --workers 2 --no-plots --seed 0 --patience 0 --name std-cpu-anneal7
cp runs/detect/std-cpu-anneal7/weights/best.pt weights/candidate/detector.pt
#     Weight averaging on the held-out source, equal budget: step 8's standardised arm (seed 0; seeds 1 and 2 as checks)
#     trained keeping its epochs, scored as its last.pt and as its last 5 epochs averaged. Rule, written before: the
#     average counts as better only with a higher held-out mAP50-95 and no lower held-out mAP50 (single-scale).
#     (`compare_recipes.py --arms standardised --epochs 20 --batch 64 --average-last 5` trains and scores the same.)
for seed in 0 1 2; do
  name=heldout-std-swa; [ $seed != 0 ] && name=heldout-std-swa-seed$seed
  MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 256 --epochs 20 --batch 64 \
      --fraction 1.0 --seed $seed --device cpu --workers 2 --no-val --no-plots --hold-out br35h --save-period 1 --name $name
  $PY tools/average_weights.py runs/detect/$name --last 5
  for w in last average-last5; do
    $PY -m detect.val --weights runs/detect/$name/weights/$w.pt --data br35h --split all --out runs/eval-det/$name-$w
    $PY -m detect.val --weights runs/detect/$name/weights/$w.pt --data rf_mri4 rsna_axial --split test \
        --out runs/eval-det/$name-$w-indist
  done
  $PY tools/evaluate.py --data br35h --split all --no-tta --det-weights runs/detect/$name/weights/average-last5.pt \
      --baseline-det-weights runs/detect/$name/weights/last.pt --out runs/eval-ab/swa-seed$seed
  $PY tools/evaluate.py --data br35h --split all --tta --det-weights runs/detect/$name/weights/average-last5.pt \
      --baseline-det-weights runs/detect/$name/weights/last.pt --out runs/eval-ab/swa-seed$seed-tta
done
#     An eighth schedule from the 207-epoch weights, as the seventh but keeping its epochs, fitted to 1.25 h (33 epochs);
#     under the same rule, its weights are its last 5 epochs averaged (the average won above). Validation fitness 0.609
#     < the candidate's 0.611 (both by detect.val --split val), so the candidate stays; 0.858 / 0.599 on all test
#     splits, but br35h's cascade 0.839, so the rule fails at its second part and no matched classifier was trained.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised-continue \
    --imgsz 256 --epochs 30 --hours 1.25 --batch 64 --workers 2 --no-plots --seed 0 --patience 0 --save-period 1 \
    --name std-cpu-swa8
$PY tools/average_weights.py runs/detect/std-cpu-swa8 --last 5
$PY -m detect.val --weights weights/candidate/detector.pt --split val --out runs/eval-det/candidate207-val
score_cycle runs/detect/std-cpu-swa8/weights/average-last5.pt std-cpu-swa8
#     Training input size on the held-out source, equal epochs: the weight-averaging arm above (seed 0) at 320 px on a
#     320-px copy. Rule, written before: 320 px only with higher held-out mAP50 and mAP50-95 in seeds 0 and 1 and
#     in-distribution mAP50-95 no more than 0.01 lower on their mean. Seed 0 lost both held-out figures (0.697 / 0.472
#     against 0.707 / 0.488), so seed 1 was not trained and 256 px stays. `by_resolution` in detect.val's output splits
#     the held-out figures by the slices' native size.
$PY tools/compact_data.py --out runs/compact320 --max-side 320 --gray --quality 75
MRI_DATA_DIR=runs/compact320 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 320 --epochs 20 --batch 64 \
    --fraction 1.0 --seed 0 --device cpu --workers 2 --no-val --no-plots --hold-out br35h --save-period 1 \
    --name heldout-std-320-seed0
$PY tools/average_weights.py runs/detect/heldout-std-320-seed0 --last 5
for name in heldout-std-swa heldout-std-320-seed0; do
  $PY -m detect.val --weights runs/detect/$name/weights/average-last5.pt --data br35h --split all \
      --out runs/eval-det/$name-average-last5-byres
done
$PY -m detect.val --weights runs/detect/heldout-std-320-seed0/weights/average-last5.pt --data rf_mri4 rsna_axial \
    --split test --out runs/eval-det/heldout-std-320-seed0-average-last5-indist
$PY tools/evaluate.py --data br35h --split all --no-tta --det-weights runs/detect/heldout-std-320-seed0/weights/average-last5.pt \
    --baseline-det-weights runs/detect/heldout-std-swa/weights/average-last5.pt --out runs/eval-ab/size320-seed0
#     Multi-scale training on the held-out source, equal epochs and size: the same arm with `standardised-multiscale`,
#     seeds 0 and 1. Rule, written before: kept only with held-out mAP50 and mAP50-95 >= the standardised arm's in both
#     seeds and in-distribution mAP50-95 no more than 0.01 lower on their mean (seed 0 first; dropped if it lost).
#     Seed 0 +0.012 / +0.012, seed 1 +0.002 / +0.003, in-distribution -0.010 / -0.009: kept, the default from scratch.
for seed in 0 1; do
  name=heldout-std-ms05-seed$seed; base=heldout-std-swa; [ $seed = 1 ] && base=heldout-std-swa-seed1
  MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model yolov5n --hyp standardised-multiscale --imgsz 256 --epochs 20 \
      --batch 64 --fraction 1.0 --seed $seed --device cpu --workers 2 --no-val --no-plots --hold-out br35h --save-period 1 \
      --name $name
  $PY tools/average_weights.py runs/detect/$name --last 5
  $PY -m detect.val --weights runs/detect/$name/weights/average-last5.pt --data br35h --split all \
      --out runs/eval-det/$name-average-last5
  $PY -m detect.val --weights runs/detect/$name/weights/average-last5.pt --data rf_mri4 rsna_axial --split test \
      --out runs/eval-det/$name-average-last5-indist
  for tta in no-tta tta; do
    out=runs/eval-ab/ms05-seed$seed; [ $tta = tta ] && out=$out-tta
    $PY tools/evaluate.py --data br35h --split all --$tta --det-weights runs/detect/$name/weights/average-last5.pt \
        --baseline-det-weights runs/detect/$base/weights/average-last5.pt --out $out
  done
done
#     The same at 416 px on a 416-px copy, same rule, written before (the 512-px bin reported, not deciding): seed 0
#     lost held-out mAP50 (0.696 against 0.707; mAP50-95 0.493 against 0.488), so no second seed and 256 px stays.
$PY tools/compact_data.py --out runs/compact416 --max-side 416 --gray --quality 75
MRI_DATA_DIR=runs/compact416 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 416 --epochs 20 --batch 64 \
    --fraction 1.0 --seed 0 --device cpu --workers 2 --no-val --no-plots --hold-out br35h --save-period 1 \
    --name heldout-std-416-seed0
$PY tools/average_weights.py runs/detect/heldout-std-416-seed0 --last 5
$PY -m detect.val --weights runs/detect/heldout-std-416-seed0/weights/average-last5.pt --data br35h --split all \
    --out runs/eval-det/heldout-std-416-seed0-average-last5-byres
$PY -m detect.val --weights runs/detect/heldout-std-416-seed0/weights/average-last5.pt --data rf_mri4 rsna_axial \
    --split test --out runs/eval-det/heldout-std-416-seed0-average-last5-indist
$PY tools/evaluate.py --data br35h --split all --no-tta --det-weights runs/detect/heldout-std-416-seed0/weights/average-last5.pt \
    --baseline-det-weights runs/detect/heldout-std-swa/weights/average-last5.pt --out runs/eval-ab/size416-seed0
#     The 416-px detector run at 256 px (explored on seed 0, then a rule written before seed 1: held-out >= the 256-px
#     arm in both figures and in-distribution mAP50-95 no more than 0.01 lower on the mean of two seeds). Seed 1:
#     held-out 0.768 / 0.530 against 0.692 / 0.471, but the known sources' mAP50-95 -0.021, so not kept.
MRI_DATA_DIR=runs/compact416 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 416 --epochs 20 --batch 64 \
    --fraction 1.0 --seed 1 --device cpu --workers 2 --no-val --no-plots --hold-out br35h --save-period 1 \
    --name heldout-std-416-seed1
$PY tools/average_weights.py runs/detect/heldout-std-416-seed1 --last 5
for seed in 0 1; do
  $PY -m detect.val --weights runs/detect/heldout-std-416-seed$seed/weights/average-last5.pt --data br35h --split all \
      --imgsz 256 --out runs/eval-det/heldout-std-416-seed$seed-average-last5-at256
  $PY -m detect.val --weights runs/detect/heldout-std-416-seed$seed/weights/average-last5.pt --data rf_mri4 rsna_axial \
      --split test --imgsz 256 --out runs/eval-det/heldout-std-416-seed$seed-average-last5-indist-at256
done
#     A short fine-tune at 416 px, run at 256 px (rule written first: mean held-out mAP50 gain >= 0.02 with a mAP50-95
#     gain, a gain in both seeds, known-source mAP50-95 no more than 0.01 lower): the 256-px arms' averaged weights
#     continued 5 epochs at 416 or at 256. Held-out +0.016 mAP50 on the mean, known sources -0.027 mAP50-95: not kept,
#     so the candidate was not fine-tuned at 416.
for seed in 0 1; do
  base=runs/detect/heldout-std-swa$([ $seed = 1 ] && echo -seed1)/weights/average-last5.pt
  for size in 416 256; do
    MRI_DATA_DIR=runs/compact$size $PY -m detect.train --model $base --hyp standardised-continue --imgsz $size \
        --epochs 5 --batch 64 --fraction 1.0 --seed $seed --device cpu --workers 2 --no-val --no-plots \
        --hold-out br35h --patience 0 --name ft$size-seed$seed
    $PY -m detect.val --weights runs/detect/ft$size-seed$seed/weights/last.pt --data br35h --split all --imgsz 256 \
        --out runs/eval-det/ft$size-seed$seed-heldout-at256
    $PY -m detect.val --weights runs/detect/ft$size-seed$seed/weights/last.pt --data rf_mri4 rsna_axial --split test \
        --imgsz 256 --out runs/eval-det/ft$size-seed$seed-indist-at256
  done
done
#     A second held-out source, rf_mri4 (640-px slices; rule written first, one seed, "better"/"worse" only with both
#     held-out figures 0.02 or more apart): train at 416, run at 256, against 256/256, on br35h + rsna_axial (745
#     images). Held-out 0.332 / 0.204 against 0.368 / 0.232: worse; seed 1 (a check, rule appended before it) 0.325 / 0.198
#     against 0.387 / 0.232: worse again, so the br35h gain does not carry.
for seed in 0 1; do for size in 256 416; do
  name=heldout-rf-std-$size-seed$seed
  MRI_DATA_DIR=runs/compact$size $PY -m detect.train --model yolov5n --hyp standardised --imgsz $size --epochs 20 \
      --batch 64 --fraction 1.0 --seed $seed --device cpu --workers 2 --no-val --no-plots --hold-out rf_mri4 \
      --save-period 1 --name $name
  $PY tools/average_weights.py runs/detect/$name --last 5
  $PY -m detect.val --weights runs/detect/$name/weights/average-last5.pt --data rf_mri4 --split all --imgsz 256 \
      --out runs/eval-det/$name-at256
  $PY -m detect.val --weights runs/detect/$name/weights/average-last5.pt --data br35h rsna_axial --split test \
      --imgsz 256 --out runs/eval-det/$name-indist-at256
done
$PY -m detect.val --weights runs/detect/heldout-rf-std-416-seed$seed/weights/average-last5.pt --data rf_mri4 --split all \
    --imgsz 416 --out runs/eval-det/heldout-rf-std-416-seed$seed-at416
done
#     Three times the epochs from scratch on the held-out side (rule written first: "helps" only if held-out mAP50 and
#     mAP50-95 both rise by more than 0.02): 60 epochs against the 20-epoch heldout-std-swa, seed 0. Held-out 0.738 /
#     0.510 against 0.707 / 0.488 (helps), known sources +0.042 / +0.057.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 256 --epochs 60 --batch 64 \
    --fraction 1.0 --seed 0 --device cpu --workers 2 --no-val --no-plots --hold-out br35h --save-period 1 \
    --name heldout-std-60ep-seed0
$PY tools/average_weights.py runs/detect/heldout-std-60ep-seed0 --last 5
$PY -m detect.val --weights runs/detect/heldout-std-60ep-seed0/weights/average-last5.pt --data br35h --split all \
    --out runs/eval-det/heldout-std-60ep-seed0-avg5
$PY -m detect.val --weights runs/detect/heldout-std-60ep-seed0/weights/average-last5.pt --data rf_mri4 rsna_axial \
    --split test --out runs/eval-det/heldout-std-60ep-seed0-avg5-indist
#     Seed 1's standardised arm by native resolution too (seed 0's is in the 320-px block above).
$PY -m detect.val --weights runs/detect/heldout-std-swa-seed1/weights/average-last5.pt --data br35h --split all \
    --out runs/eval-det/heldout-std-swa-seed1-average-last5-byres
#     A ninth schedule from the 207-epoch weights with the kept recipe (`standardised-multiscale-continue`), fitted to
#     0.85 h (22 epochs), its weights its last 5 epochs averaged, under the same rule written before it: validation
#     fitness 0.610 < 0.612, so the candidate stays; 0.858 / 0.599 on all test splits, but br35h's cascade 0.845, so the
#     rule fails at its second part and no matched classifier was trained.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised-multiscale-continue \
    --imgsz 256 --epochs 30 --hours 0.85 --batch 64 --workers 2 --no-plots --seed 0 --patience 0 --save-period 1 \
    --name std-cpu-ms9
$PY tools/average_weights.py runs/detect/std-cpu-ms9 --last 5
score_cycle runs/detect/std-cpu-ms9/weights/average-last5.pt std-cpu-ms9
#     Then on one GPU (an H200), two jobs side by side, rules written before: the three-way recipe comparison (plain
#     ultralytics, standardised, standardised-multiscale; trained there, scored here on the full-size images), and a
#     tenth schedule from the 207-epoch weights (78 epochs fitted to 0.115 h, last 5 averaged): validation fitness
#     0.601 < 0.612 and 0.854 / 0.597 on all test splits (br35h's cascade 0.835), so nothing ships. Seed 1 of the
#     comparison ran alone in a second command. Over four paired runs multi-scale lost to standardised (mean held-out
#     mAP50-95 -0.009), so detect.train's default from scratch is standardised again.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model weights/candidate/detector.pt --hyp standardised-multiscale-continue \
    --imgsz 256 --epochs 300 --hours 0.115 --batch 64 --device 0 --workers 8 --no-plots --seed 0 --patience 0 \
    --save-period 1 --name std-gpu-ms10 &
MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --epochs 20 --batch 64 --device 0 --workers 7 \
    --average-last 5 --score none --seed 0 --out runs/bench/compare_recipes_gpu3_seed0 &
wait
MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --epochs 20 --batch 64 --device 0 --workers 5 --jobs 3 \
    --average-last 5 --score none --seed 1 --out runs/bench/compare_recipes_gpu3_seed1
for seed in 0 1; do
  $PY benchmarks/compare_recipes.py --resume runs/bench/compare_recipes_gpu3_seed$seed
done
$PY tools/average_weights.py runs/detect/std-gpu-ms10 --last 5
score_cycle runs/detect/std-gpu-ms10/weights/average-last5.pt std-gpu-ms10
for run in std-scratch std-scratch-cont std-scratch-cont2 std-scratch-cont3 std-scratch-cont4 std-gpu-cont std-gpu-s std-cpu-cont6 \
    std-cpu-anneal7; do
  $PY -m detect.val --weights runs/detect/$run/weights/best.pt --out runs/eval-det/$run
  for d in rf_mri4 br35h rsna_axial; do
    $PY tools/evaluate.py --data $d --split test --det-weights runs/detect/$run/weights/best.pt --out runs/eval-$run/$d
  done
done

#     The 207-epoch candidate with a classifier trained on its own proposals, scored as it would ship (rule written
#     before: every split's cascade >= 0.85 / 0.55 at defaults and type accuracy >= 0.93 on rf_mri4 and rsna_axial):
#     br35h 0.828 and rsna_axial's type accuracy 0.859 missed it, so nothing shipped. Why br35h stays under 0.85:
#     the audit's count of true boxes nested inside another box, and both pairs' localisation of them (`by_nesting`).
matched_pair weights/candidate/detector.pt cand207
$PY tools/check_targets.py runs/eval-release-cand207/{rf_mri4,br35h,rsna_axial} || echo "targets missed: nothing ships"
for d in rf_mri4 br35h rsna_axial; do
  $PY tools/evaluate.py --data $d --split test --no-tta --det-weights runs/release-cand207/detector.pt \
      --cls-weights runs/release-cand207/classifier.pt --out runs/eval-release-cand207/$d-no-tta
done
$PY tools/audit.py --out runs/audit-nested
$PY tools/evaluate.py --data br35h --split test --out runs/eval-nesting/shipped-br35h
$PY tools/evaluate.py --data br35h --split test --det-weights runs/release-cand207/detector.pt \
    --cls-weights runs/release-cand207/classifier.pt --out runs/eval-nesting/cand207-br35h  # matched_pair's, again with by_nesting
#     200 epochs from scratch in one schedule (trained across three sessions; rule written before it started: the average
#     of epochs 196-200 replaces the candidate if it validates above 0.612, and ships under the rule above with its
#     own matched classifier: `tools/check_targets.py` on its matched pair's folders, with `--detect-val` of its
#     single-scale test scores and `--detector 0.850 0.598`). It ran across three sessions,
#     each continuing with MRI_DATA_DIR=runs/compact256 $PY -m detect.train --resume runs/detect/std-scratch-200.
MRI_DATA_DIR=runs/compact256 $PY -m detect.train --model yolov5n --hyp standardised --imgsz 256 --epochs 200 --batch 64 \
    --workers 2 --no-val --no-plots --seed 0 --patience 0 --save-period 1 --name std-scratch-200
#     Its decision: the average replaced the candidate (validation fitness 0.6165 > 0.612) and met the rule's first part
#     (0.857 / 0.609 single-scale on all test splits); its matched pair missed the second (br35h's cascade 0.834,
#     rsna_axial's type accuracy 0.923), so nothing shipped. Its classifier is weights/candidate/classifier.pt.
$PY tools/average_weights.py runs/detect/std-scratch-200 --last 5
cp runs/detect/std-scratch-200/weights/average-last5.pt weights/candidate/detector.pt
$PY -m detect.val --weights weights/candidate/detector.pt --split val --out runs/eval-det/s200-val
$PY -m detect.val --weights weights/candidate/detector.pt --out runs/eval-det/s200
matched_pair weights/candidate/detector.pt s200
$PY tools/check_targets.py runs/eval-release-s200/{rf_mri4,br35h,rsna_axial} --detect-val runs/eval-det/s200 \
    --detector 0.850 0.598 || echo "targets missed: nothing ships"
cp runs/release-s200/classifier.pt weights/candidate/classifier.pt
#     Then the two pairs side by side on the same test slices (rule written before: the candidate pair replaces the
#     shipped one if the paired 95% interval of the pooled cascade mAP50 difference stays above -0.02, pooled type
#     accuracy >= 0.93 and every split's mAP50-95 >= 0.55): +0.004 (-0.022 to +0.030), so the shipped pair stays.
$PY tools/evaluate.py --data rf_mri4 br35h rsna_axial --split test --det-weights weights/candidate/detector.pt \
    --cls-weights weights/candidate/classifier.pt --baseline-det-weights weights/detector.pt \
    --baseline-cls-weights weights/classifier.pt --out runs/eval-c18
#     The held-out gap of the candidate's recipe at the shipped default (test-time augmentation): the 60-epoch
#     standardised arm without br35h, on all of br35h and on its training sources' test splits.
GAP_ARM=runs/detect/heldout-std-60ep-seed0/weights/average-last5.pt
$PY tools/evaluate.py --data br35h --split all --det-weights $GAP_ARM --out runs/eval-gap60/heldout
$PY tools/evaluate.py --data rf_mri4 rsna_axial --split test --det-weights $GAP_ARM --out runs/eval-gap60/known
#     The shipped detector's recipe against the candidate's, side by side on the held-out source (reading written before:
#     standardised better or worse only if both held-out figures of the averaged weights move the same way in both
#     seeds): scanner ahead in both seeds, so the evidence on unseen data does not favour the candidate. Then plain
#     ultralytics alone, seed 0, to see whether arms of earlier CPU runs can be compared with these.
for seed in 0 1; do
  MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --arms scanner standardised --epochs 20 --batch 64 \
      --average-last 5 --workers 2 --seed $seed --out runs/bench/scanner-vs-std-seed$seed
done
MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --arms default --epochs 20 --batch 64 --average-last 5 \
    --workers 2 --seed 0 --out runs/bench/default-cpu-seed0
#     Plain ultralytics moved 0.019 held-out mAP50 from its earlier CPU run (over the 0.01 written before), so arms are
#     compared only within one run: the three recipes side by side, two seeds (2026-11-29).
#     Reading written before: averaged weights, held-out br35h; scanner and standardised each against default, better
#     if held-out mAP50 and mAP50-95 are both higher in both seeds, worse if both lower in both, else a tie. If scanner
#     is better than default and standardised not better than scanner, detect.train's default from scratch becomes
#     scanner; otherwise it stays standardised. An interrupted seed continues with --resume FOLDER.
#     Result: held-out mAP50 / mAP50-95, averaged, default 0.675 / 0.454 and 0.677 / 0.450, scanner 0.736 / 0.495 and
#     0.743 / 0.494, standardised 0.713 / 0.490 and 0.694 / 0.473: scanner and standardised both better than default,
#     standardised worse than scanner, so detect.train's default from scratch is now scanner (seed 1's default arm was
#     interrupted at a session's end and finished with --resume).
for seed in 0 1; do
  MRI_DATA_DIR=runs/compact256 $PY benchmarks/compare_recipes.py --arms default scanner standardised --epochs 20 \
      --batch 64 --average-last 5 --workers 2 --seed $seed --out runs/bench/three-way-cpu-seed$seed
done

# 11. Measure the release's quality into runs/bench-<time>/ and write benchmarks/REPORT.md (the timing sections
#     come from `make bench` on a quiet machine; this release kept those measured during its development). The
#     recipe tables come from the reports of steps 2, 8 and 10 committed in benchmarks/ (bench_report copied each run
#     folder's report there the first time); the held-out cascade and classifier sections, when their folders (steps 5
#     and 7) are not on the machine, stay as they were.
make bench-quality COMPARE_DIR=runs/bench/compare_classifiers_128 HELDOUT_DIR=runs/bench/heldout-geomean-tta \
    RECIPES_DIR="benchmarks/compare_recipes.json benchmarks/compare_recipes_compare_std_cpu_seed0.json \
    benchmarks/compare_recipes_compare_std_cpu_seed1.json benchmarks/compare_recipes_heldout-size.json \
    benchmarks/compare_recipes_compare_recipes_gpu3_seed0.json benchmarks/compare_recipes_compare_recipes_gpu3_seed1.json \
    benchmarks/compare_recipes_scanner-vs-std-seed0.json benchmarks/compare_recipes_scanner-vs-std-seed1.json \
    benchmarks/compare_recipes_default-cpu-seed0.json benchmarks/compare_recipes_three-way-cpu-seed0.json \
    benchmarks/compare_recipes_three-way-cpu-seed1.json"
