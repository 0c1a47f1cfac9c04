"""Checkpoints: pickle-free state that round-trips exactly, refusal of crafted pickles, and the
choice of the checkpoint to resume from at every point a kill can interrupt a save."""

import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lmforge
from lmforge.errors import UserError
from lmforge.training.checkpoint import (
    COMPLETE,
    LEGACY_STATE,
    STATE_JSON,
    STATE_TENSORS,
    is_complete,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def _training_objects(seed=0):
    torch.manual_seed(seed)
    model = lmforge.build("bert-test", task="masked_lm", seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, steps=2):
    for _ in range(steps):
        ids = torch.randint(5, model.config.vocab_size, (2, 8))
        out = model(ids, torch.ones_like(ids), torch.zeros_like(ids))
        out.mlm_logits.float().logsumexp(-1).mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def _draws():
    return random.random(), np.random.random(), torch.rand(3).tolist(), random.gauss(0, 1), np.random.normal()


def test_round_trip_is_exact_and_pickle_free(tmp_path):
    model, optimizer, scheduler = _training_objects()
    _train(model, optimizer, scheduler)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.normal()  # and in NumPy's
    path = save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": 2})
    expected = _draws()
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in path.iterdir())
    assert is_complete(path) and (tmp_path / "latest").read_text().strip() == path.name

    other, other_opt, other_sched = _training_objects(seed=1)
    _train(other, other_opt, other_sched, steps=1)
    state = load_checkpoint(path, other, other_opt, other_sched)
    assert state == {"step": 2, "epoch": 0, "batch_in_epoch": 2}
    assert _draws() == expected
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    saved, loaded = optimizer.state_dict(), other_opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for key, values in saved["state"].items():
        for name, tensor in values.items():
            assert torch.equal(tensor, loaded["state"][key][name]) and tensor.dtype == loaded["state"][key][name].dtype
    assert scheduler.state_dict() == other_sched.state_dict()
    # Training on from both gives the same weights, bit for bit.
    torch.manual_seed(7)
    _train(model, optimizer, scheduler)
    torch.manual_seed(7)
    _train(other, other_opt, other_sched)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


class _Payload:
    """Unpickling this writes the marker file: what a crafted training_state.pt would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _legacy_checkpoint(root, step, payload):
    model, optimizer, scheduler = _training_objects()
    path = save_checkpoint(root, step, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": 0})
    for name in (STATE_TENSORS, STATE_JSON, COMPLETE):
        (path / name).unlink()
    torch.save({"optimizer": payload, "scheduler": {}, "rng": {}}, path / LEGACY_STATE)
    return path, (model, optimizer, scheduler)


def test_crafted_pickle_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "marker"
    # The payload is live: an unrestricted unpickler runs it.
    pickle.loads(pickle.dumps(_Payload(tmp_path / "live")))
    assert (tmp_path / "live").read_text() == "ran"

    path, objects = _legacy_checkpoint(tmp_path / "ckpt", 4, _Payload(marker))
    assert latest_checkpoint(tmp_path / "ckpt") == path  # a pre-v2 checkpoint still counts
    with pytest.raises(UserError, match="refusing to load") as error:
        load_checkpoint(path, *objects)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_legacy_checkpoint_with_plain_data_loads(tmp_path):
    model, optimizer, scheduler = _training_objects()
    _train(model, optimizer, scheduler)
    from lmforge.training.checkpoint import rng_state

    path, _ = _legacy_checkpoint(tmp_path, 2, None)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
               path / LEGACY_STATE)
    expected = _draws()
    load_checkpoint(path, *_training_objects(seed=3))
    assert _draws() == expected


@pytest.mark.parametrize("damage", ["json", "tensors", "truncate_tensors"])
def test_damaged_state_is_a_user_error(tmp_path, damage):
    model, optimizer, scheduler = _training_objects()
    path = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": 1})
    if damage == "json":
        (path / STATE_JSON).write_text('{"optimizer": {"__tensor__": "nope"}, "scheduler": {}, "rng": {}}')
    elif damage == "tensors":
        (path / STATE_TENSORS).write_bytes(b"garbage")
    else:
        data = (path / STATE_TENSORS).read_bytes()
        (path / STATE_TENSORS).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(path, *_training_objects())


# -- every kill point of save_checkpoint, built by hand -----------------------------------------
@pytest.fixture
def two_checkpoints(tmp_path):
    model, optimizer, scheduler = _training_objects()
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 4, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": 4})
    save_checkpoint(root, 8, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": 8})
    return root


def test_kill_before_latest_written(two_checkpoints):
    (two_checkpoints / "latest").unlink()  # first checkpoint renamed, pointer never written
    assert latest_checkpoint(two_checkpoints).name == "step-00000008"


def test_kill_between_rename_and_pointer_update(two_checkpoints):
    (two_checkpoints / "latest").write_text("step-00000004\n")  # pointer still names the older one
    assert latest_checkpoint(two_checkpoints).name == "step-00000008"


def test_latest_names_a_deleted_directory(two_checkpoints):
    shutil.rmtree(two_checkpoints / "step-00000008")
    assert latest_checkpoint(two_checkpoints).name == "step-00000004"


def test_kill_while_writing_temporary(two_checkpoints):
    shutil.copytree(two_checkpoints / "step-00000008", two_checkpoints / ".tmp-step-00000012")
    (two_checkpoints / ".tmp-step-00000012" / COMPLETE).unlink()
    assert latest_checkpoint(two_checkpoints).name == "step-00000008"


@pytest.mark.parametrize("damage", ["missing_file", "truncated_file", "no_marker", "bad_marker"])
def test_incomplete_newest_falls_back(two_checkpoints, damage):
    newest = two_checkpoints / "step-00000008"
    if damage == "missing_file":
        (newest / "model.safetensors").unlink()
    elif damage == "truncated_file":
        data = (newest / STATE_TENSORS).read_bytes()
        (newest / STATE_TENSORS).write_bytes(data[:-10])
    elif damage == "no_marker":
        (newest / COMPLETE).unlink()
    else:
        (newest / COMPLETE).write_text("{not json")
    assert latest_checkpoint(two_checkpoints).name == "step-00000004"


def test_no_complete_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "step-00000003").mkdir()
    (tmp_path / "latest").write_text("step-00000003\n")
    assert latest_checkpoint(tmp_path) is None


def test_pruning_keeps_complete_checkpoints(tmp_path):
    model, optimizer, scheduler = _training_objects()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": step}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000003"]
    assert json.loads((tmp_path / "step-00000003" / COMPLETE).read_text())["files"]["model.safetensors"] > 0


def test_resume_in_process_is_bit_exact(tmp_path):
    """A run stopped at a checkpoint and resumed ends with the very weights of one never
    stopped (constant lr, so the shorter first leg has the same schedule)."""
    from lmforge.data.prepare import prepare_corpus
    from lmforge.pretraining import load_recipe, run_pretraining
    from lmforge.tokenization import Tokenizer
    from lmforge.training.loop import read_metrics

    repo = Path(__file__).resolve().parents[2]
    corpus = [str(repo / "data" / "brown" / "brown-sample.jsonl")]
    Tokenizer.train(corpus, vocab_size=800, show_progress=False).save(tmp_path / "tok")
    prepare_corpus(corpus, tmp_path / "tok", tmp_path / "data", heldout_docs=2, show_progress=False)
    sets = [f"data.prepared={tmp_path / 'data'}", "train.schedule=constant", "train.warmup_steps=0", "train.log_every=1",
            "export_hf=false", "train.batch_size=8"]
    recipe = lambda steps: load_recipe(repo / "recipes" / "pretrain" / "tiny.yaml", [*sets, f"train.max_steps={steps}"])
    run_pretraining(recipe(6), tmp_path / "full")
    run_pretraining(recipe(3), tmp_path / "cut")
    run_pretraining(recipe(6), tmp_path / "cut", resume=True)
    full = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "full" / "metrics.jsonl") if "loss" in m}
    cut = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "cut" / "metrics.jsonl") if "loss" in m}
    assert full == cut
    a, _ = lmforge.load(tmp_path / "full" / "model")
    b, _ = lmforge.load(tmp_path / "cut" / "model")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- real kill -9 at many moments of a save ------------------------------------------------------
_SAVER = """
import sys
from pathlib import Path
sys.path[:0] = [{tests!r}]
from test_checkpoint import _training_objects, _train
from lmforge.training.checkpoint import save_checkpoint
model, optimizer, scheduler = _training_objects()
_train(model, optimizer, scheduler, steps=1)
print("ready", flush=True)
step = 0
while True:  # save after save until killed: the kill lands somewhere inside one
    step += 1
    save_checkpoint(Path({root!r}), step, model, optimizer, scheduler, {{"epoch": 0, "position": step}}, keep=2)
"""


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.031, 0.057, 0.089, 0.137])
def test_kill_9_anywhere_in_a_save_leaves_a_loadable_checkpoint(tmp_path, delay):
    """SIGKILL at several moments after the first checkpoint is in place, while later ones are
    being written: resume always finds a complete checkpoint that loads, never a torn one."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "checkpoints"
    script = _SAVER.format(tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not any(root.glob("step-*")) and time.monotonic() < deadline:
            time.sleep(0.002)  # until the first checkpoint is renamed into place
        time.sleep(delay)
        assert proc.poll() is None, "the saver died on its own"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    found = latest_checkpoint(root)
    assert found is not None and is_complete(found), sorted(p.name for p in root.iterdir())
    model, optimizer, scheduler = _training_objects(seed=1)
    state = load_checkpoint(found, model, optimizer, scheduler)
    assert state["step"] == state["position"] >= 1
