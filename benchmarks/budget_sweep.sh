#!/bin/bash
# The sweep behind recipes/pretrain/cpu-5min.yaml (benchmarks/RESULTS.md, "Quality per compute").
#   bash benchmarks/budget_sweep.sh OUT [steps|time]
# steps: runs of equal token count, one thread each (quality per step does not depend on what
#        else the machine runs, so two can go at once); time: the budget itself, 4.5 minutes of
#        training on 2 threads, one at a time with nothing else running.
# All runs share one prepared copy of Brown (WordPiece 8,000, 10 held-out documents), so they see
# the same tokens; afterwards every final model is evaluated on the same 640 held-out blocks of
# 128 tokens (15% masked): python benchmarks/budget_sweep_eval.py OUT
set -euo pipefail
out=${1:?usage: budget_sweep.sh OUT [steps|time]}; mode=${2:-steps}
lmforge="python -m lmforge"
mkdir -p "$out"
if [ ! -d "$out/prepared" ]; then
    $lmforge tokenizer train --files data/brown/brown.jsonl.xz --kind wordpiece --vocab-size 8000 --out "$out/tokenizer"
    $lmforge prepare --corpus data/brown/brown.jsonl.xz --tokenizer "$out/tokenizer" --heldout-docs 10 --out "$out/prepared"
fi
common=(--set "data.prepared=$out/prepared" --set objective.kind=mlm --set export_hf=false --set train.save_every=0
        --set train.eval_batches=20 --set train.keep_checkpoints=1)
crammed='{norm_placement: pre, final_norm: true, bias: false, feed_forward: gated, hidden_dropout: 0.0, attention_dropout: 0.0}'
bert='{hidden_dropout: 0.0, attention_dropout: 0.0}'
s64=(--set objective.max_seq_length=64 --set objective.max_predictions=16)
steps() {  # NAME STEPS [--set ...]: bert-tiny, lr 3e-3, 10% warm-up, mask 0.25, batch 32 unless overridden
    local name=$1 n=$2; shift 2
    OMP_NUM_THREADS=1 $lmforge pretrain bert-mini --out "$out/$name" "${common[@]}" --set model.preset=bert-tiny \
        --set train.max_steps=$n --set train.eval_every=$((n / 4)) --set train.warmup_steps=0 \
        --set train.warmup_fraction=0.1 --set train.lr=3e-3 --set train.batch_size=32 \
        --set objective.mlm_probability=0.25 --set objective.max_predictions=32 "$@"
}
timed() {  # NAME [--set ...]: the cpu-5min recipe with changes
    local name=$1; shift
    OMP_NUM_THREADS=2 $lmforge pretrain cpu-5min --out "$out/$name" "${common[@]}" "$@"
}
if [ "$mode" = steps ]; then
    steps A_crammed 600 --set "model.config=$crammed"
    steps C_mask15 600 --set "model.config=$crammed" --set objective.mlm_probability=0.15 --set objective.max_predictions=20
    steps D_mask40 600 --set "model.config=$crammed" --set objective.mlm_probability=0.4 --set objective.max_predictions=51
    steps F_lr1.5e-3 600 --set "model.config=$crammed" --set train.lr=1.5e-3
    steps E_bert_block 600 --set "model.config=$bert"
    steps B_s64 1200 --set "model.config=$crammed" "${s64[@]}"
    steps G_s64_b16 2400 --set "model.config=$crammed" "${s64[@]}" --set train.batch_size=16
    steps H_s32 2400 --set "model.config=$crammed" --set objective.max_seq_length=32 --set objective.max_predictions=8
    steps E2_bert_block_s64 1200 --set "model.config=$bert" "${s64[@]}"
    steps X1_learned 1500 --set "model.config=$bert" "${s64[@]}" --set train.batch_size=16
    steps X2_rotary 1500 --set "model.config={hidden_dropout: 0.0, attention_dropout: 0.0, positions: rotary}" "${s64[@]}" --set train.batch_size=16
    steps X3_crammed_rotary 1500 --set "model.config={norm_placement: pre, final_norm: true, bias: false, feed_forward: gated, hidden_dropout: 0.0, attention_dropout: 0.0, positions: rotary}" "${s64[@]}" --set train.batch_size=16
    steps X4_rotary_lr6e-3 1500 --set "model.config={hidden_dropout: 0.0, attention_dropout: 0.0, positions: rotary}" "${s64[@]}" --set train.batch_size=16 --set train.lr=6e-3
else
    timed T_learned_s64 --set "model.config=$bert" "${s64[@]}" --set "objective.seq_length_curriculum=[]"
    timed Q1_rotary_s64 "${s64[@]}" --set "objective.seq_length_curriculum=[]"
    timed Q2_cpu5min
fi
