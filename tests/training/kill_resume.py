"""The exact-resume check every pretraining objective runs: train a recipe for 16 steps from the
command line; train it again, kill -9 the process once a mid-run checkpoint exists, resume with
``--resume``; the resumed metrics must equal the uninterrupted run's, step for step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
STEPS = 16
COMMON = [f"train.max_steps={STEPS}", "train.save_every=4", "train.log_every=1", "train.eval_every=8",
          "export_hf=false"]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _cli(recipe: Path, out: Path, sets: list[str]) -> list[str]:
    return [sys.executable, "-m", "lmforge", "pretrain", str(recipe), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


def resumed_run_equals_uninterrupted(recipe: Path, tmp_path: Path, sets: list[str], keys: tuple[str, ...],
                                     tolerance: dict) -> int:
    """Run the check; return how many metric values were compared (callers assert it is enough).
    ``tolerance`` goes to ``pytest.approx`` (abs= or rel=)."""
    sets = [*COMMON, *sets]
    run = dict(check=True, env=env(), cwd=REPO, capture_output=True)
    subprocess.run(_cli(recipe, tmp_path / "full", sets), **run)
    proc = subprocess.Popen(_cli(recipe, tmp_path / "cut", sets), env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = tmp_path / "cut" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step-00000008":
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = tmp_path / "cut" / "checkpoints" / latest.read_text().strip() / "trainer_state.json"
    assert 0 < json.loads(state.read_text())["step"] < STEPS, "the kill came after the run had finished"
    subprocess.run(_cli(recipe, tmp_path / "cut", sets) + ["--resume"], **run)
    full = read_metrics(tmp_path / "full" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert [m["step"] for m in full] == [m["step"] for m in resumed]
    compared = 0
    for a, b in zip(full, resumed):
        for key in keys:
            if key in a:
                assert a[key] == pytest.approx(b[key], **tolerance), (a["step"], key)
                compared += 1
    return compared
