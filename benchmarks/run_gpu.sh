#!/usr/bin/env bash
# Run the GPU benchmarks and write their JSON/logs into OUTDIR (default: bench_out).
#   bash benchmarks/run_gpu.sh OUTDIR [bench|train|fidelity|evaluate|ddp|ddp-train]
# evaluate: evaluate's old settings against the new on the same run (bench_evaluate.py).
# ddp: captured steps on one GPU vs 2 processes (torchrun, each its own graph with the gradients'
#      all-reduce inside); prints the throughput ratio (goal >= 1.9). Needs 2 GPUs.
# ddp-train: the train verb under torchrun with --cuda-graph on a small set; fit ends by checking
#      that both ranks hold identical weights (a RuntimeError otherwise), -v logs each rank's sum.
# Datasets and runs go under $WORK (default /tmp).
set -uo pipefail
out=${1:-bench_out}
what=${2:-bench}
mkdir -p "$out"
work=${WORK:-/tmp}
mkdir -p "$work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cs() { python3 -m causalscene.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/gpu.txt"
python3 -c "import torch, pyro; print('torch', torch.__version__, 'pyro', pyro.__version__)" | tee -a "$out/gpu.txt"
train_benches() {
  cs procgen rpg --n 50000 --size 64 --seed 0 --out $work/rpg64 --no-progress --overwrite
  b="python3 benchmarks/bench_train.py --device cuda --steps 200 --warmup 20 --cuda-graph"
  $b --batch-size 1024 --out "$out/train_fp32.json" 2>&1 | tee "$out/train.log"
  $b --batch-size 1024 --bf16 --channels-last --out "$out/train_bf16.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 256 --out "$out/train_b256.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 1024 --data $work/rpg64 --out "$out/train_real.json" 2>&1 | tee -a "$out/train.log"
  $b --batch-size 1024 --data $work/rpg64 --bf16 --channels-last --out "$out/train_real_bf16.json" 2>&1 | tee -a "$out/train.log"
  for f in 1.0 0.25 0.125; do  # with training's consistency term on a share f of each batch
    $b --batch-size 1024 --data $work/rpg64 --bf16 --channels-last --consistency-weight 0.25 \
      --consistency-fraction $f --out "$out/train_real_bf16_term$f.json" 2>&1 | tee -a "$out/train.log"
  done
  # the networks compiled (train --compile; a one-off compile per loop, not timed)
  $b --batch-size 1024 --data $work/rpg64 --bf16 --channels-last --consistency-weight 0.25 \
    --consistency-fraction 0.25 --compile --out "$out/train_real_bf16_compile.json" 2>&1 | tee -a "$out/train.log"
}
case "$what" in
train)
  train_benches
  ;;
bench)
  train_benches
  python3 benchmarks/bench_cage.py --device cuda --baseline-permutations 20 --json 2>&1 | tee "$out/cage.log"
  python3 benchmarks/bench_modules.py --device cuda --json 2>&1 | tee "$out/modules.log"
  ;;
fidelity)
  # the default GPU training budget: 50k images, 100 epochs at batch 1024, lr 1e-3, captured bf16
  # steps, the label-consistency term at its default weight on a quarter of each batch (1.0 costs
  # 1.36x the step time for the same fidelity here), the held-out ELBO and grids every 10 epochs,
  # no mid-epoch checkpoints. Learning rates measured to collapse late (held-out ELBO 22k -> 3k):
  # 2e-3 at batch 512 (faces); 1.414e-3 at batch 1024 (faces seed 1 of 4, rpg seed 0).
  # evaluate runs twice per model: at goal 3's sizes (timed; 200 images per state), then with
  # N_PER_STATE (default 1000) images per state for a closer fidelity reading (psi cached).
  # SEEDS: training seeds (default 0). Times: date +%s.%N around each process.
  now() { date +%s.%N; }
  since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
  for scene in ${SCENES:-faces rpg}; do
    dag=dags/$([ $scene = rpg ] && echo rpg_fight || echo faces).yaml
    cs procgen $scene --n 50000 --size 64 --seed 0 --out $work/$scene --no-progress --overwrite
    for seed in ${SEEDS:-0}; do
      run=$work/run_${scene}_s$seed; rm -rf $run; t0=$(now)
      cs train --dag $dag --data $work/$scene --out $run --epochs ${EPOCHS:-100} --batch-size 1024 --lr 1e-3 --base-channels 32 --latent-dim 16 --device cuda --collapse-labels --cuda-graph --bf16 --channels-last --no-progress --seed $seed --consistency-fraction ${FRACTION:-0.25} --eval-every 10 --save-every 10 --checkpoint-every 1000000 ${TRAIN_FLAGS:-} 2>&1 | tail -3 | tee -a "$out/fidelity.log"
      echo "$scene seed $seed train_seconds $(since $t0)" | tee -a "$out/fidelity.log"; t0=$(now)
      cs evaluate $run --device cuda --probe-epochs 10 --probe-images 20000 --n-per-state 200 --n-counterfactual 200 --seed 0 2>&1 | tail -30 | tee -a "$out/fidelity.log"
      echo "$scene seed $seed evaluate_seconds $(since $t0)" | tee -a "$out/fidelity.log"
      cp $run/eval.json "$out/eval_${scene}_s$seed.json"
      n=${N_PER_STATE:-1000}
      cs evaluate $run --device cuda --probe-epochs 10 --probe-images 20000 --n-per-state $n --n-counterfactual 200 --seed 0 > /dev/null 2>&1
      python3 -c "import json, sys; e = json.load(open(sys.argv[1])); f = e['fidelity']; print(sys.argv[2], f'min fidelity {min(f.values()):.4f}', {k: round(v, 4) for k, v in f.items()})" $run/eval.json "$scene seed $seed, $n per state:" | tee -a "$out/fidelity.log"
      cp $run/eval.json "$out/eval_${scene}_s${seed}_n$n.json"; cp $run/metrics.jsonl "$out/metrics_${scene}_s$seed.jsonl"
      cp $run/samples_e*$(printf %03d ${EPOCHS:-100}).png "$out/samples_${scene}_s$seed.png" 2>/dev/null
    done
  done
  ;;
evaluate)
  # evaluate's old settings (twins rebuilt, every probe epoch) against the new, at the fidelity
  # mode's sizes, on $work/run_${scene}_s0 (the fidelity mode's seed-0 model) when present (else
  # a short 2-epoch run is trained)
  for scene in ${SCENES:-faces rpg}; do
    dag=dags/$([ $scene = rpg ] && echo rpg_fight || echo faces).yaml
    run=$work/run_${scene}_s0
    if [ ! -f $run/config.json ]; then
      cs procgen $scene --n 50000 --size 64 --seed 0 --out $work/$scene --no-progress --overwrite
      cs train --dag $dag --data $work/$scene --out $run --epochs 2 --batch-size 1024 --lr 1e-3 --base-channels 32 --latent-dim 16 --device cuda --collapse-labels --bf16 --channels-last --no-progress --seed 0
    fi
    python3 benchmarks/bench_evaluate.py --run $run --device cuda --probe-epochs 10 --probe-images 20000 --n-per-state 200 --n-counterfactual 200 --json --out "$out/evaluate_$scene.json" 2>&1 | tee -a "$out/evaluate.log"
  done
  ;;
ddp)
  b="benchmarks/bench_train.py --device cuda --batch-size 1024 --steps 200 --warmup 20 --cuda-graph"
  : >"$out/ddp.log"
  for flags in "" "--bf16 --channels-last"; do
    tag=$([ -z "$flags" ] && echo fp32 || echo bf16)
    python3 $b $flags --out "$out/ddp1_$tag.json" 2>&1 | tee -a "$out/ddp.log"
    torchrun --nproc_per_node 2 $b $flags --ddp --compare "$out/ddp1_$tag.json" \
      --out "$out/ddp2_$tag.json" 2>&1 | tee -a "$out/ddp.log"
  done
  ;;
ddp-train)
  cs procgen rpg --n 8192 --size 32 --seed 0 --out $work/rpg32 --no-progress --overwrite
  rm -rf $work/run_ddp
  torchrun --nproc_per_node 2 -m causalscene.cli -v train --dag dags/rpg_fight.yaml --data $work/rpg32 \
    --out $work/run_ddp --epochs 3 --batch-size 256 --base-channels 16 --latent-dim 8 --device cuda \
    --collapse-labels --cuda-graph --no-progress --seed 0 2>&1 | tee "$out/ddp_train.log"
  status=${PIPESTATUS[0]}
  cp $work/run_ddp/metrics.jsonl "$out/metrics_ddp.jsonl" 2>/dev/null
  grep -h "weights equal rank 0's" "$out/ddp_train.log"
  echo "ddp-train exit status $status (0: both ranks ended with rank 0's weights)" | tee -a "$out/ddp_train.log"
  ;;
esac
