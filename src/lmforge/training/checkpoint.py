"""Training checkpoints that make resume exact: weights (safetensors), optimizer and scheduler
state, every RNG state, the data position and the configs.

Nothing in a checkpoint is a pickle, so loading one runs no code whoever wrote the run
directory: tensors go to ``training_state.safetensors`` and everything else (optimizer
hyper-parameters, scheduler counters, the Python and NumPy RNG states) to
``training_state.json``, whose few container types are spelled out (``__tuple__``,
``__tensor__``...) so that the states round-trip exactly. Floats survive JSON exactly
(``repr`` is round-trip, NaN and infinities included).

Each checkpoint is written to a temporary directory, flushed to disk, and renamed into place
(the write-fsync-rename pattern), with ``complete.json`` written last listing every file and
its size. Resume takes the newest ``step-*`` directory that is complete, whatever ``latest``
says: a kill between the rename and the pointer update, or a deleted directory that
``latest`` still names, costs at most the steps since the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmforge.errors import UserError
from lmforge.files import fsync_dir, fsync_tree, write_text_atomic
from lmforge.interop.native import save_native
from lmforge.interop.state import copy_into

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
TRAINER_STATE = "trainer_state.json"
COMPLETE = "complete.json"
LEGACY_STATE = "training_state.pt"  # lmforge <= 0.1: a pickle, loaded only with weights_only=True
FORMAT = "lmforge.checkpoint"
FORMAT_VERSION = 2
_STEP_DIR = re.compile(r"^step-(\d+)$")


# -- RNG states ------------------------------------------------------------------------------
def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- pickle-free state encoding -----------------------------------------------------------------
def encode_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able form of ``value``; its tensors are moved into ``tensors`` (for safetensors)."""
    if torch.is_tensor(value):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode_state(v, tensors) for v in value]}
    if isinstance(value, list):
        return [encode_state(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode_state(v, tensors) for k, v in value.items()}
        return {"__dict__": [[encode_state(k, tensors), encode_state(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def decode_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``encode_state``; anything malformed raises ValueError."""
    if isinstance(value, list):
        return [decode_state(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.asarray(value["data"], dtype=np.dtype(value["__ndarray__"])).reshape(value["shape"])
    if "__tuple__" in value:
        return tuple(decode_state(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {decode_state(k, tensors): decode_state(v, tensors) for k, v in value["__dict__"]}
    return {k: decode_state(v, tensors) for k, v in value.items()}


def save_state(directory: Path, state: dict) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_state(state, tensors)
    save_file(tensors, directory / STATE_TENSORS, metadata={"format": FORMAT})
    (directory / STATE_JSON).write_text(json.dumps(encoded) + "\n")


def load_state(directory: Path) -> dict:
    """The state ``save_state`` wrote; a damaged or foreign file is a UserError."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(directory / STATE_TENSORS)
        state = decode_state(json.loads((directory / STATE_JSON).read_text()), tensors)
    except Exception as error:  # safetensors, JSON, KeyError, bad dtype: all mean a damaged file
        raise UserError(f"checkpoint {directory} is damaged ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'unreadable'})") from None
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "rng"} <= set(state):
        raise UserError(f"checkpoint {directory}: {STATE_JSON} lacks the optimizer, scheduler or RNG state")
    return state


def _load_legacy_state(path: Path) -> dict:
    """A pre-v2 ``training_state.pt``, through torch's restricted unpickler: tensors, plain
    containers and NumPy arrays only; anything else (a crafted file) is refused unexecuted."""
    import pickle

    core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 renamed numpy.core
    safe = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"refusing to load {path}: it holds more than tensors and plain data ({first[:160]})") from None


# -- writing and finding checkpoints ------------------------------------------------------------
def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, trainer_state: dict, keep: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_native(model, tmp)
    save_state(tmp, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()})
    (tmp / TRAINER_STATE).write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    (tmp / COMPLETE).write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "files": files}) + "\n")
    fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    fsync_dir(root)
    write_text_atomic(root / "latest", final.name + "\n")
    complete = [p for p in step_dirs(root) if is_complete(p)]
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def step_dirs(root: Path) -> list[Path]:
    """``step-*`` directories under ``root``, oldest first (by step number)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def is_complete(path: Path) -> bool:
    """Every file ``complete.json`` lists is there with its size (a pre-v2 checkpoint: its four files)."""
    marker = path / COMPLETE
    if not marker.is_file():
        legacy = ("lmforge.json", "model.safetensors", LEGACY_STATE, TRAINER_STATE)
        return all((path / name).is_file() for name in legacy)
    try:
        files = json.loads(marker.read_text())["files"]
        return all((path / name).is_file() and (path / name).stat().st_size == size for name, size in files.items())
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return False


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (None when there is none)."""
    for path in reversed(step_dirs(root)):
        if is_complete(path):
            return path
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    """Restores everything in place and returns the trainer state (step, data position)."""
    from safetensors.torch import load_file

    legacy = not (path / COMPLETE).is_file() and (path / LEGACY_STATE).is_file()
    state = _load_legacy_state(path / LEGACY_STATE) if legacy else load_state(path)
    try:
        trainer_state = json.loads((path / TRAINER_STATE).read_text())
        weights = load_file(path / "model.safetensors")
    except Exception as error:
        raise UserError(f"checkpoint {path} is damaged ({type(error).__name__})") from None
    copy_into(model, weights)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise UserError(f"checkpoint {path} does not fit this run ({str(error).splitlines()[0][:160]})") from None
    return trainer_state
