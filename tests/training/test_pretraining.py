"""Pretraining end to end: recipes, loss falls per objective, exact resume after SIGKILL,
and 2-process DDP (gloo) equal to one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kill_resume import resumed_run_equals_uninterrupted

from lmforge.errors import UserError
from lmforge.pretraining import load_recipe, run_pretraining
from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "pretrain" / "tiny.yaml"
NO_DROPOUT = ["model.config={hidden_dropout: 0.0, attention_dropout: 0.0}"]


def recipe(prepared, *overrides):
    return load_recipe(TINY, [f"data.prepared={prepared}", "train.log_every=1", *overrides])


def env():
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def test_recipe_validation():
    r = load_recipe(TINY, ["train.max_steps=7", "objective.whole_word=true", "train.lr=3e-4"])
    assert r.train.max_steps == 7 and r.objective.whole_word is True and r.train.lr == 3e-4
    assert r.model.preset == "bert-test" and r.data.corpus == ["data/brown/brown-sample.jsonl"]
    with pytest.raises(UserError, match="train.max_stepz"):
        load_recipe(TINY, ["train.max_stepz=3"])
    with pytest.raises(UserError, match="train.max_steps must be int"):
        load_recipe(TINY, ["train.max_steps=many"])
    with pytest.raises(UserError, match="objective.kind must be one of"):
        load_recipe(TINY, ["objective.kind=sop"])
    with pytest.raises(UserError, match="key=value"):
        load_recipe(TINY, ["train.max_steps"])


@pytest.mark.parametrize("kind", ["mlm+nsp", "mlm"])
def test_loss_falls(prepared, tmp_path, kind):
    r = recipe(prepared, f"objective.kind={kind}", "train.max_steps=30", "train.eval_every=30", "export_hf=false")
    result = run_pretraining(r, tmp_path / "run")
    records = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    first = sum(m["loss"] for m in records[:5]) / 5
    last = sum(m["loss"] for m in records[-5:]) / 5
    assert last < first - 0.3, (first, last)
    assert ("nsp_loss" in records[0]) == (kind == "mlm+nsp")
    assert result["steps"] == 30
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["last_eval"]["eval_mlm_loss"] < summary["first_eval"]["eval_mlm_loss"]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    import lmforge

    model, tokenizer = lmforge.load(tmp_path / "run" / "model")
    assert model.task == ("pretraining" if kind == "mlm+nsp" else "masked_lm")
    assert tokenizer.vocab_size == model.config.vocab_size


def test_existing_run_needs_resume(prepared, tmp_path):
    r = recipe(prepared, "train.max_steps=2", "export_hf=false")
    run_pretraining(r, tmp_path / "run")
    with pytest.raises(UserError, match="--resume"):
        run_pretraining(r, tmp_path / "run")


def _cli(out, *sets):
    return [sys.executable, "-m", "lmforge", "pretrain", str(TINY), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


def test_sigkill_and_resume_equals_uninterrupted(prepared, tmp_path):
    compared = resumed_run_equals_uninterrupted(TINY, tmp_path, [f"data.prepared={prepared}"],
                                                ("loss", "mlm_loss", "nsp_loss", "eval_mlm_loss", "eval_nsp_accuracy"),
                                                dict(abs=1e-5))
    assert compared > 30


def test_two_process_ddp_equals_one_process(prepared, tmp_path):
    sets = [f"data.prepared={prepared}", "train.max_steps=4", "train.batch_size=8", "train.log_every=1",
            "train.eval_every=4", "export_hf=false", *NO_DROPOUT]
    single = _cli(tmp_path / "one", *sets)
    subprocess.run(single, check=True, env=env(), capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                "-m", "lmforge", *single[3:]]
    torchrun[torchrun.index(str(tmp_path / "one"))] = str(tmp_path / "two")
    done = subprocess.run(torchrun, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert len(one) == len(two) == 5
    for a, b in zip(one, two):
        for key in ("loss", "mlm_loss", "nsp_loss", "eval_mlm_loss", "eval_mlm_accuracy"):
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=2e-5), (a["step"], key)
