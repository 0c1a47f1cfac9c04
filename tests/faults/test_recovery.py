"""What the fault table cannot express as one row: outputs replaced only when complete
(--overwrite, fine-tuning's best model, features), a full disk during a checkpoint, a torn
metrics line on resume, stale prepared data of a failed attempt, and the CLI's start-up cost."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.cli import main

from .conftest import Assets

REPO = Path(__file__).resolve().parents[2]


def test_convert_in_place_with_overwrite_loads(assets: Assets, tmp_path):
    import lmforge

    model_dir = assets.copy("mlm", tmp_path / "m")
    assert main(["convert", "to-hf", str(model_dir), str(model_dir), "--overwrite"]) == 0
    assert not (model_dir / "lmforge.json").exists() and (model_dir / "config.json").is_file()
    model, tokenizer = lmforge.load(model_dir)
    assert model.task == "masked_lm" and tokenizer is not None
    assert not list(tmp_path.glob(".m.*"))  # no staging leftovers


def test_prepare_overwrite_replaces_only_when_complete(assets: Assets, tmp_path):
    out = assets.copy("prepared", tmp_path / "prep")
    old_manifest = json.loads((out / "manifest.json").read_text())
    argv = ["prepare", "--corpus", str(assets.good_txt), "--tokenizer", str(assets.tok), "--out", str(out),
            "--overwrite", "--num-workers", "0", "--no-progress", "--heldout-docs", "1"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"][0]["path"] == str(assets.good_txt.resolve()) != old_manifest["sources"][0]["path"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep"]


def test_evaluate_overwrite_keeps_the_model(assets: Assets, tmp_path, capsys):
    run = tmp_path / "ft"
    assets.copy("classifier", run / "model")
    (run / "metrics.json").write_text(json.dumps({"settings": {}, "accuracy": 1.0}))
    data = REPO / "data/glue-sample/sst2-dev.tsv"
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(data), "--out", str(run)]) == 2
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(data), "--out", str(run),
                 "--overwrite"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert "settings" not in metrics and metrics["examples"] > 0 and (run / "model" / "config.json").is_file()
    # evaluate may always replace what evaluate wrote
    for _ in range(2):
        assert main(["evaluate", "--model", str(run / "model"), "--data", str(data), "--out", str(tmp_path / "ev")]) == 0


def _digest(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_finetune_save_model_never_loses_the_previous_best(assets: Assets, tmp_path, monkeypatch):
    """The best model is replaced per epoch; a crash between removing the old one and moving the
    new one in used to leave neither. Now the old one is moved aside, not deleted, until then."""
    import os

    import torch

    import lmforge
    from lmforge.finetune.run import save_model

    model, tokenizer = lmforge.load(assets.classifier)
    target = tmp_path / "ft" / "model"
    save_model(model, tokenizer, target)
    before = _digest(target)
    real = os.replace

    def crash_moving_the_new_model_in(src, dst, *args, **kwargs):
        if Path(dst) == target and Path(src).name.startswith(".model."):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst, *args, **kwargs)

    better, _ = lmforge.load(assets.classifier)
    with torch.no_grad():
        next(better.parameters()).add_(1.0)  # the next epoch's model differs
    monkeypatch.setattr(os, "replace", crash_moving_the_new_model_in)
    with pytest.raises(OSError):
        save_model(better, tokenizer, target)
    monkeypatch.setattr(os, "replace", real)
    kept = [d for d in (tmp_path / "ft").iterdir() if d.is_dir() and _digest(d) == before]
    assert kept, "the previous model is gone"
    save_model(better, tokenizer, target)  # the next save works and leaves no staging behind
    assert _digest(target) != before and sorted(p.name for p in (tmp_path / "ft").iterdir()) == ["model"]


@pytest.mark.parametrize("name", ["f.npy", "f.safetensors"])
def test_features_overwrite_replaces_only_when_complete(tmp_path, monkeypatch, name):
    import numpy as np
    import safetensors.numpy

    from lmforge.errors import UserError
    from lmforge.features import Features

    out = tmp_path / name
    Features(np.ones((2, 3), np.float32)).save(out)
    before = out.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        Features(np.zeros((2, 3), np.float32)).save(out)

    def full_disk(*args, **kwargs):
        handle = args[1] if name.endswith(".safetensors") else args[0]
        Path(handle if isinstance(handle, str) else handle.name).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(OSError):
        Features(np.zeros((2, 3), np.float32)).save(out, overwrite=True)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [name]
    monkeypatch.undo()
    Features(np.zeros((2, 3), np.float32)).save(out, overwrite=True)
    assert out.read_bytes() != before and sorted(p.name for p in tmp_path.iterdir()) == [name]


def _pretrain(assets: Assets, out: Path, *sets: str) -> list[str]:
    return ["pretrain", str(assets.recipe), "--out", str(out), *[x for s in sets for x in ("--set", s)]]


def test_full_disk_keeps_last_checkpoint(assets: Assets, tmp_path, monkeypatch, capsys):
    from lmforge.training import checkpoint

    real = checkpoint.save_state
    calls = []

    def fill_disk(directory, state):
        calls.append(directory)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(directory / checkpoint.STATE_TENSORS))
        real(directory, state)

    monkeypatch.setattr(checkpoint, "save_state", fill_disk)
    out = tmp_path / "run"
    assert main(_pretrain(assets, out, "train.max_steps=2", "train.save_every=1", "export_hf=false")) == 1
    errors = re.findall(r"error: [^\r\n]*", capsys.readouterr().err)  # (after the progress bar's \r)
    assert len(errors) == 1 and "no space left on device" in errors[0] and "training_state.safetensors" in errors[0]
    kept = checkpoint.latest_checkpoint(out / "checkpoints")
    assert kept is not None and kept.name == "step-00000001" and checkpoint.is_complete(kept)


def test_torn_metrics_line_on_resume(assets: Assets, tmp_path):
    from lmforge.training.loop import read_metrics

    out = tmp_path / "run"
    assert main(_pretrain(assets, out, "train.max_steps=2", "train.save_every=1", "export_hf=false",
                          "train.log_every=1")) == 0
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 3, "loss": 4.2')  # killed mid-write
    assert main(_pretrain(assets, out, "train.max_steps=3", "train.save_every=1", "export_hf=false",
                          "train.log_every=1") + ["--resume"]) == 0
    steps = [m["step"] for m in read_metrics(out / "metrics.jsonl") if "loss" in m]
    assert steps == [1, 2, 3]


def test_stale_prepared_data_is_rebuilt(tmp_path, monkeypatch):
    """A fresh run into an earlier failed attempt made from another corpus prepares its own data."""
    from lmforge.pretraining import load_recipe, run_pretraining
    from lmforge.training.rundir import recorded_data_source

    monkeypatch.chdir(REPO)
    small = tmp_path / "small.txt"
    small.write_text("".join(f"sentence number {i} of document {d} .\n" + ("\n" if i == 9 else "")
                             for d in range(30) for i in range(10)))
    sets = ["train.max_steps=1", "train.batch_size=4", "export_hf=false", "data.vocab_size=200",
            "data.heldout_docs=1"]
    out = tmp_path / "run"
    stale = ["data.corpus=[data/brown/brown-sample.jsonl]", *sets]
    from lmforge.objectives import dataset

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:  # the earlier attempt dies right after preparing its data
        patch.setattr(dataset.PretrainingDataset, "__init__", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run_pretraining(load_recipe(REPO / "recipes/pretrain/tiny.yaml", [*stale, "model.preset=bert-test"]), out)
    assert (out / "data" / "manifest.json").is_file()
    assert main(["pretrain", "recipes/pretrain/tiny.yaml", "--out", str(out), "--set", f"data.corpus=[{small}]",
                 *[x for s in sets for x in ("--set", s)]]) == 0
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["sources"][0]["path"] == str(small.resolve())
    assert recorded_data_source(out)["corpus"][0]["path"] == str(small.resolve())


def test_cli_import_does_not_import_torch():
    code = "import sys, lmforge.cli; lmforge.cli.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": ""})
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["presets"], ["pretrain", "--bad-flag"]])
def test_fast_answers(argv):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmforge", *argv], capture_output=True,
                   env={"PYTHONPATH": str(REPO / "src"), "PATH": ""})
    assert time.perf_counter() - started < 1.0


def test_preset_counts_match_built_models():
    import torch

    from lmforge.cli.models import parameter_count, preset_task
    from lmforge.families import all_presets
    from lmforge.models.build import build_model

    for name, config in all_presets().items():
        with torch.device("meta"):
            built = sum(p.numel() for p in build_model(config, preset_task(config)).parameters())
        assert parameter_count(config) == built, name


def test_cli_tokenizer_kinds_match():
    from lmforge.cli.tokenizer import KINDS
    from lmforge.tokenization import KIND_SPECS

    assert KINDS == {name: kind.reference for name, kind in KIND_SPECS.items()}


def test_run_pretraining_validates_its_recipe_before_any_work(tmp_path, monkeypatch):
    """From Python too (not only the CLI): a bad value fails before a tokenizer or data exist."""
    from lmforge.errors import UserError
    from lmforge.pretraining import load_recipe, run_pretraining

    monkeypatch.chdir(REPO)
    recipe = load_recipe(REPO / "recipes/pretrain/tiny.yaml", ["data.corpus=[data/brown/brown-sample.jsonl]",
                                                               "train.lr=-1"])
    with pytest.raises(UserError, match="train.lr must be positive"):
        run_pretraining(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_swap_cut_between_its_renames_is_undone(tmp_path, capsys):
    """Killed after the old model was renamed aside and before the new one moved in: the next
    command finds the old copy and puts it back instead of saying the model is missing."""
    from lmforge.files import restore_interrupted, staged_dir

    target = tmp_path / "model"
    with staged_dir(target) as new:
        (new / "weights.txt").write_text("old")
    aside = tmp_path / ".model.old-4242"
    target.rename(aside)  # the state a kill between the two renames leaves
    assert restore_interrupted(target) == target and (target / "weights.txt").read_text() == "old"
    assert not aside.exists() and restore_interrupted(target) is None
    target.rename(aside)
    with staged_dir(target) as new:  # the next save restores first, then swaps as usual
        (new / "weights.txt").write_text("new")
    assert (target / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
