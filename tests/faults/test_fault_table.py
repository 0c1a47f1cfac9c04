"""The fault table: one row per way a user (or an attacker's file) can hurt a run.

Each row builds its bad input in a fresh directory, runs the command in-process through the
CLI's ``main(argv)`` (or calls the API), and checks the exit status, a fragment of the one-line
message, that no traceback was printed, that every file listed in ``unchanged`` hashes as
before, and that nothing listed in ``absent`` was created. Classes:

- security: loading a file runs no code from it;
- data loss: a command never destroys what it did not make;
- silent-wrong: what used to "work" while doing the wrong thing is now refused;
- error message: what used to be a traceback is one line naming the input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from lmforge.errors import UserError

from .conftest import Assets, latin1, truncated


class Payload:
    """Unpickling this writes the file ``marker``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@dataclass
class Fault:
    id: str
    kind: str  # security | data loss | silent-wrong | error message
    build: Callable[[Path, Assets], list[str] | Callable[[], object]]  # argv, or an API call
    code: int
    message: str
    unchanged: tuple[str, ...] = ()  # paths under the row's directory, hashed before and after
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards
    argparse: bool = False  # argparse's own errors print the usage line too
    needs_no_cuda: bool = False
    tags: tuple[str, ...] = field(default=())


# -- builders -----------------------------------------------------------------------------------
def _finetune_run(tmp: Path, a: Assets) -> Path:
    run = tmp / "ft"
    a.copy("classifier", run / "model")
    (run / "metrics.json").write_text(json.dumps({"task": "classification", "accuracy": 0.9, "settings": {}}))
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (run / "predictions.tsv").write_text("id\tlabel\n0\t1\n")
    return run


def _pretrain_run(tmp: Path, a: Assets, payload: object | None = None) -> Path:
    """A pretraining run directory with one checkpoint in the pre-v2 layout (a pickle)."""
    run = tmp / "run"
    step = run / "checkpoints" / "step-00000001"
    a.copy("mlm", step)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (step / name).unlink(missing_ok=True)
    (step / "trainer_state.json").write_text('{"step": 1, "epoch": 0, "batch_in_epoch": 1}')
    torch.save({"optimizer": payload, "scheduler": {}, "rng": {}}, step / "training_state.pt")
    (run / "checkpoints" / "latest").write_text("step-00000001\n")
    (run / "recipe.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 7.0}\n')
    return run


def _pickle_model(tmp: Path, a: Assets) -> Path:
    model = a.copy("mlm_hf", tmp / "m")
    (model / "model.safetensors").unlink()
    torch.save({"w": Payload(tmp / "marker")}, model / "pytorch_model.bin")
    return model


def _damaged_weights(tmp: Path, a: Assets, how: str) -> Path:
    model = a.copy("mlm_hf", tmp / "m")
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00" * 64}[how])
    return model


def _garbage_config(tmp: Path, a: Assets) -> Path:
    model = a.copy("mlm_hf", tmp / "m")
    (model / "config.json").write_text("{this is not json")
    return model


def _wrong_config_values(tmp: Path, a: Assets) -> Path:
    model = a.copy("mlm_hf", tmp / "m")
    config = json.loads((model / "config.json").read_text())
    config["hidden_size"] = "wide"
    (model / "config.json").write_text(json.dumps(config))
    return model


def _big_tokenizer(tmp: Path, a: Assets) -> Path:
    model = a.copy("mlm_hf", tmp / "m")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (model / name).unlink(missing_ok=True)
    big = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(2000)]
    (model / "vocab.txt").write_text("".join(t + "\n" for t in big))
    return model


def _recipe(tmp: Path, a: Assets, *changes: str) -> list[str]:
    return ["pretrain", str(a.recipe), *[x for c in changes for x in ("--set", c)]]


def _prepared_copy(tmp: Path, a: Assets) -> Path:
    return a.copy("prepared", tmp / "prep")


def _row_corpus(tmp: Path, kind: str) -> Path:
    if kind == "latin1":
        return latin1(tmp / "bad.txt")
    return truncated(tmp / f"bad.txt.{kind}")


def _classification_file(tmp: Path, kind: str) -> Path:
    if kind == "latin1":
        path = tmp / "train.tsv"
        path.write_bytes("sentence\tlabel\nun caf\xe9 tr\xe8s bon .\t1\nmauvais .\t0\n".encode("latin-1"))
        return path
    path = tmp / "train.tsv.gz"
    import gzip

    data = gzip.compress(("sentence\tlabel\n" + "a good film .\t1\n" * 3000).encode())
    path.write_bytes(data[: len(data) // 2])
    return path


def _legacy_api_call(tmp: Path, a: Assets):
    from lmforge.training.checkpoint import load_checkpoint

    run = _pretrain_run(tmp, a, Payload(tmp / "marker"))
    import lmforge

    model = lmforge.build("bert-test", task="masked_lm")
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return lambda: load_checkpoint(run / "checkpoints" / "step-00000001", model, optimizer, scheduler)


def _state_pickle_as_json(tmp: Path, a: Assets):
    """A pickle dropped in place of training_state.json: read as JSON, never unpickled."""
    from lmforge.training.checkpoint import load_checkpoint, save_checkpoint
    import lmforge

    model = lmforge.build("bert-test", task="masked_lm")
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    path = save_checkpoint(tmp / "ck", 1, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": 1})
    import pickle

    (path / "training_state.json").write_bytes(pickle.dumps(Payload(tmp / "marker")))
    (path / "training_state.safetensors").write_bytes(pickle.dumps(Payload(tmp / "marker")))
    return lambda: load_checkpoint(path, model, optimizer, scheduler)


SAMPLES = Path(__file__).parents[2] / "data"


def _finetune(t: Path, a: Assets, task: str, train: Path, dev: Path) -> list[str]:
    return ["finetune", "--model", str(a.mlm_hf), "--task", task, "--train", str(train), "--eval", str(dev),
            "--out", str(t / "ft"), "--epochs", "1"]


def _squad(t: Path, name: str, start: object = 29, context: str = "Super Bowl 50 was won by the Denver Broncos.",
           questions: int = 3) -> Path:
    """SQuAD with ``questions`` questions whose answer "Denver Broncos" is said to start at ``start``."""
    qas = [{"id": f"q{i}", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": start}]}
           for i in range(questions)]
    path = t / name
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path


def _conll(t: Path, name: str, text: str) -> Path:
    (t / name).write_text(text)
    return t / name


def _tsv(t: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    (t / name).write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return t / name


def _reader_call(t: Path, reader: str, path: Path):
    from lmforge.tasks.classification import read_classification
    from lmforge.tasks.ner import read_conll
    from lmforge.tasks.qa import read_squad

    read = {"classification": read_classification, "conll": read_conll, "squad": read_squad}[reader]
    return lambda: read(path) and 0


def _features_file(t: Path) -> Path:
    import numpy as np

    np.save(t / "f.npy", np.arange(6.0).reshape(2, 3))
    return t / "f.npy"


# -- the table ----------------------------------------------------------------------------------
FAULTS = [
    # security
    Fault("resume-crafted-pickle", "security",
          lambda t, a: _recipe(t, a) + ["--out", str(_pretrain_run(t, a, Payload(t / "marker"))), "--resume"],
          2, "refusing to load", unchanged=("run/checkpoints",), absent=("marker",)),
    Fault("api-load-crafted-pickle", "security", _legacy_api_call, 2, "refusing to load", absent=("marker",)),
    Fault("pickle-in-place-of-state-files", "security", _state_pickle_as_json, 2, "damaged", absent=("marker",)),
    Fault("model-crafted-pytorch-bin", "security",
          lambda t, a: ["fill-mask", "--model", str(_pickle_model(t, a)), "a [MASK] ."], 2, "refusing to load",
          unchanged=("m",), absent=("marker",)),
    # data loss
    Fault("evaluate-out-finetune-run", "data loss",
          lambda t, a: ["evaluate", "--model", str(a.classifier), "--data",
                        str(Path(__file__).parents[2] / "data/glue-sample/sst2-dev.tsv"),
                        "--out", str(_finetune_run(t, a))], 2, "--overwrite", unchanged=("ft",)),
    Fault("evaluate-into-model-with-foreign-metrics", "data loss",
          lambda t, a: (a.copy("classifier", t / "m"), (t / "m/metrics.json").write_text('{"mine": 1}'),
                        ["evaluate", "--model", str(t / "m"), "--data",
                         str(Path(__file__).parents[2] / "data/glue-sample/sst2-dev.tsv")])[-1],
          2, "--overwrite", unchanged=("m",)),
    Fault("pretrain-out-finetune-run", "data loss",
          lambda t, a: _recipe(t, a) + ["--out", str(_finetune_run(t, a))], 2, "fine-tuning run", unchanged=("ft",)),
    Fault("pretrain-out-model", "data loss",
          lambda t, a: _recipe(t, a) + ["--out", str(a.copy("mlm", t / "m"))], 2, "holds a model", unchanged=("m",)),
    Fault("pretrain-out-other-files", "data loss",
          lambda t, a: ((t / "d").mkdir(), (t / "d/notes.txt").write_text("mine"),
                        _recipe(t, a) + ["--out", str(t / "d")])[-1], 2, "other files", unchanged=("d",)),
    Fault("pretrain-fresh-over-checkpoints", "data loss",
          lambda t, a: _recipe(t, a) + ["--out", str(_pretrain_run(t, a))], 2, "--resume", unchanged=("run",)),
    Fault("prepare-overwrite-unreadable-corpus", "data loss",
          lambda t, a: ["prepare", "--corpus", str(_row_corpus(t, "latin1")), "--tokenizer", str(a.tok), "--out",
                        str(_prepared_copy(t, a)), "--overwrite", "--num-workers", "0", "--no-progress"],
          2, "not UTF-8", unchanged=("prep",)),
    Fault("prepare-overwrite-truncated-xz", "data loss",
          lambda t, a: ["prepare", "--corpus", str(_row_corpus(t, "xz")), "--tokenizer", str(a.tok), "--out",
                        str(_prepared_copy(t, a)), "--overwrite", "--num-workers", "0", "--no-progress"],
          2, "truncated", unchanged=("prep",)),
    Fault("prepare-overwrite-foreign-dir", "data loss",
          lambda t, a: ["prepare", "--corpus", str(a.good_txt), "--tokenizer", str(a.tok), "--out",
                        str(a.copy("mlm", t / "m")), "--overwrite", "--num-workers", "0", "--no-progress"],
          2, "not written by prepare", unchanged=("m",)),
    Fault("tokenizer-train-into-model", "data loss",
          lambda t, a: ["tokenizer", "train", "--files", str(a.good_txt), "--vocab-size", "100", "--no-progress",
                        "--out", str(a.copy("mlm", t / "m"))], 2, "--overwrite", unchanged=("m",)),
    Fault("tokenizer-train-overwrite-model", "data loss",
          lambda t, a: ["tokenizer", "train", "--files", str(a.good_txt), "--vocab-size", "100", "--no-progress",
                        "--out", str(a.copy("mlm", t / "m")), "--overwrite"], 2, "replaces only a tokenizer",
          unchanged=("m",)),
    Fault("convert-to-hf-in-place", "data loss",
          lambda t, a: ["convert", "to-hf", str(a.copy("mlm", t / "m")), str(t / "m")], 2, "--overwrite",
          unchanged=("m",)),
    Fault("convert-from-hf-over-model", "data loss",
          lambda t, a: ["convert", "from-hf", str(a.mlm_hf), str(a.copy("mlm", t / "m"))], 2, "--overwrite",
          unchanged=("m",)),
    Fault("finetune-out-pretrain-run", "data loss",
          lambda t, a: ["finetune", "--model", str(a.mlm_hf), "--task", "classification",
                        "--train", str(Path(__file__).parents[2] / "data/glue-sample/sst2-train.tsv"),
                        "--eval", str(Path(__file__).parents[2] / "data/glue-sample/sst2-dev.tsv"),
                        "--out", str(_pretrain_run(t, a))], 2, "pretraining run", unchanged=("run",)),
    Fault("demo-over-pretrain-run", "data loss",
          lambda t, a: (lambda out: lambda: __import__("lmforge.demo", fromlist=["main"]).main(
              ["--out", str(out), "--steps", "1"]))(_pretrain_run(t, a)),
          2, "not an earlier demo run", unchanged=("run",)),
    Fault("resume-with-bad-preset-leaves-nothing", "data loss",
          lambda t, a: _recipe(t, a, "model.preset=bert-huge") + ["--out", str(_pretrain_run(t, a)), "--resume"],
          2, "unknown preset", unchanged=("run",)),
    Fault("features-out-existing-file", "data loss",
          lambda t, a: ["features", "--model", str(a.mlm), "--input", str(a.good_txt),
                        "--out", str(_features_file(t))], 2, "--overwrite", unchanged=("f.npy",)),
    Fault("features-overwrite-unreadable-input", "data loss",
          lambda t, a: ["features", "--model", str(a.mlm), "--input", str(latin1(t / "in.txt")),
                        "--out", str(_features_file(t)), "--overwrite"], 2, "not UTF-8", unchanged=("f.npy",)),
    # silent-wrong
    Fault("pretrain-negative-steps", "silent-wrong",
          lambda t, a: _recipe(t, a, "train.max_steps=-5") + ["--out", str(t / "run")], 2, "train.max_steps",
          absent=("run",)),
    Fault("device-typo", "silent-wrong",
          lambda t, a: _recipe(t, a, "train.device=gpu") + ["--out", str(t / "run")], 2, "auto, cpu, cuda",
          absent=("run",)),
    Fault("tokenizer-train-empty-file", "silent-wrong",
          lambda t, a: ((t / "empty.txt").write_text("\n  \n"),
                        ["tokenizer", "train", "--files", str(t / "empty.txt"), "--out", str(t / "tok"),
                         "--no-progress"])[-1], 2, "holds no text", absent=("tok",)),
    Fault("resume-with-other-corpus", "silent-wrong",
          lambda t, a: (_pretrain_run(t, a), (t / "run/data").mkdir(), (t / "run/data/manifest.json").write_text("{}"),
                        (t / "run/data_source.json").write_text('{"corpus": []}'),
                        ["pretrain", str(Path(__file__).parents[2] / "recipes/pretrain/tiny.yaml"),
                         "--out", str(t / "run"), "--resume"])[-1],
          2, "keeps its data", unchanged=("run",)),
    Fault("resume-without-checkpoint-early", "silent-wrong",
          lambda t, a: ["pretrain", str(Path(__file__).parents[2] / "recipes/pretrain/tiny.yaml"),
                        "--out", str(t / "run"), "--resume"], 2, "no complete checkpoint",
          absent=("run/tokenizer", "run/data")),
    Fault("finetune-squad-answers-off-their-offsets", "silent-wrong",
          lambda t, a: _finetune(t, a, "qa", _squad(t, "train.json", start=3), _squad(t, "dev.json")),
          2, "3 of 3 answers are not in the context at their answer_start (e.g. question q0", absent=("ft",)),
    Fault("finetune-squad-offset-past-the-end", "silent-wrong",
          lambda t, a: _finetune(t, a, "qa", _squad(t, "train.json", start=400), _squad(t, "dev.json")),
          2, "offset 400 is past the context's 44 characters", absent=("ft",)),
    Fault("finetune-conll-without-ner-column", "silent-wrong",
          lambda t, a: _finetune(t, a, "ner", _conll(t, "train.txt", "EU NNP B-NP\nrejects VBZ B-VP\n. . O\n"),
                                 SAMPLES / "ner-sample/dev.txt"),
          2, "holds chunk tags (B-NP, B-VP), not entity tags: is the NER column missing?", absent=("ft",)),
    Fault("finetune-conll-ragged-columns", "silent-wrong",
          lambda t, a: _finetune(t, a, "ner", _conll(t, "train.txt", "EU NNP B-NP B-ORG\n\nParis B-LOC\n"),
                                 SAMPLES / "ner-sample/dev.txt"),
          2, "train.txt:3: 2 columns, but line 1 has 4", absent=("ft",)),
    Fault("finetune-eval-only-label", "silent-wrong",
          lambda t, a: _finetune(t, a, "classification", _tsv(t, "train.tsv", [("good .", "1"), ("bad .", "0")]),
                                 _tsv(t, "dev.tsv", [("fine .", "1"), ("meh .", "2"), ("so so .", "2")])),
          2, "label '2' occurs in 2 example(s) of", absent=("ft",)),
    Fault("evaluate-label-the-model-never-saw", "error message",
          lambda t, a: ["evaluate", "--model", str(a.classifier), "--out", str(t / "eval"), "--data",
                        str(_tsv(t, "dev.tsv", [("fine .", "1"), ("meh .", "2"), ("so so .", "2")]))],
          2, "label '2' (2 example(s)) is not one the model was trained on", absent=("eval",)),
    Fault("finetune-eval-only-ner-tag", "silent-wrong",
          lambda t, a: _finetune(t, a, "ner", _conll(t, "train.txt", "Paris B-LOC\nis O\n"),
                                 _conll(t, "dev.txt", "John B-PER\nis O\n\nParis B-LOC\n")),
          2, "label 'B-PER' occurs in 1 example(s) of", absent=("ft",)),
    # error messages
    Fault("prepare-latin1", "error message",
          lambda t, a: ["prepare", "--corpus", str(_row_corpus(t, "latin1")), "--tokenizer", str(a.tok),
                        "--out", str(t / "out"), "--num-workers", "0", "--no-progress"], 2, "not UTF-8",
          absent=("out",)),
    Fault("prepare-truncated-gz", "error message",
          lambda t, a: ["prepare", "--corpus", str(_row_corpus(t, "gz")), "--tokenizer", str(a.tok),
                        "--out", str(t / "out"), "--num-workers", "0", "--no-progress"], 2, "truncated",
          absent=("out",)),
    Fault("prepare-truncated-xz-workers", "error message",
          lambda t, a: ["prepare", "--corpus", str(_row_corpus(t, "xz")), "--tokenizer", str(a.tok),
                        "--out", str(t / "out"), "--num-workers", "1", "--no-progress"], 2, "truncated",
          absent=("out",)),
    Fault("features-latin1", "error message",
          lambda t, a: ["features", "--model", str(a.mlm), "--input", str(latin1(t / "in.txt")),
                        "--out", str(t / "f.npy")], 2, "not UTF-8", absent=("f.npy",)),
    Fault("predict-latin1", "error message",
          lambda t, a: ["predict", "--model", str(a.classifier), "--input", str(latin1(t / "in.txt"))],
          2, "not UTF-8"),
    Fault("finetune-latin1", "error message",
          lambda t, a: ["finetune", "--model", str(a.mlm_hf), "--task", "classification",
                        "--train", str(_classification_file(t, "latin1")),
                        "--eval", str(_classification_file(t, "latin1")), "--out", str(t / "ft")], 2, "not UTF-8",
          absent=("ft",)),
    Fault("finetune-truncated-gz", "error message",
          lambda t, a: ["finetune", "--model", str(a.mlm_hf), "--task", "classification",
                        "--train", str(_classification_file(t, "gz")),
                        "--eval", str(Path(__file__).parents[2] / "data/glue-sample/sst2-dev.tsv"),
                        "--out", str(t / "ft")], 2, "truncated", absent=("ft",)),
    Fault("finetune-squad-empty-context", "error message",
          lambda t, a: _finetune(t, a, "qa", _squad(t, "train.json", context=" "), _squad(t, "dev.json")),
          2, "train.json: question q0 has an empty context", absent=("ft",)),
    Fault("finetune-squad-answer-start-not-a-number", "error message",
          lambda t, a: _finetune(t, a, "qa", _squad(t, "train.json"), _squad(t, "dev.json", start="twenty-nine")),
          2, "dev.json: question q0: answer_start 'twenty-nine' is not a character offset", absent=("ft",)),
    Fault("reader-conll-latin1", "error message",
          lambda t, a: _reader_call(t, "conll", (t / "train.txt").write_bytes("Caf\xe9 B-LOC\n".encode("latin-1"))
                                    and t / "train.txt"), 2, "train.txt: not UTF-8"),
    Fault("reader-squad-truncated-xz", "error message",
          lambda t, a: _reader_call(t, "squad", truncated(t / "train.json.xz", json.dumps({"data": []}) * 500)),
          2, "train.json.xz: damaged or truncated"),
    Fault("reader-classification-truncated-gz", "error message",
          lambda t, a: _reader_call(t, "classification", _classification_file(t, "gz")), 2,
          "train.tsv.gz: damaged or truncated"),
    Fault("reader-conll-not-gzip", "error message",
          lambda t, a: _reader_call(t, "conll", (t / "train.txt.gz").write_bytes(b"EU B-ORG\n") and t / "train.txt.gz"),
          2, "train.txt.gz: damaged or truncated"),
    Fault("empty-safetensors", "error message",
          lambda t, a: ["fill-mask", "--model", str(_damaged_weights(t, a, "empty")), "a [MASK] ."], 2, "is empty"),
    Fault("truncated-safetensors", "error message",
          lambda t, a: ["fill-mask", "--model", str(_damaged_weights(t, a, "truncated")), "a [MASK] ."],
          2, "truncated"),
    Fault("garbage-safetensors", "error message",
          lambda t, a: ["features", "--model", str(_damaged_weights(t, a, "garbage")), "--input", str(a.good_txt),
                        "--out", str(t / "f.npy")], 2, "damaged"),
    Fault("garbage-config-json", "error message",
          lambda t, a: ["fill-mask", "--model", str(_garbage_config(t, a)), "a [MASK] ."], 2, "not valid JSON"),
    Fault("wrong-config-values", "error message",
          lambda t, a: ["fill-mask", "--model", str(_wrong_config_values(t, a)), "a [MASK] ."], 2, "config"),
    Fault("fill-mask-too-long", "error message",
          lambda t, a: ["fill-mask", "--model", str(a.mlm), "a [MASK] " + "word " * 300], 2, "at most 128"),
    Fault("features-max-length-too-long", "error message",
          lambda t, a: ["features", "--model", str(a.mlm), "--input", str(a.good_txt), "--out", str(t / "f.npy"),
                        "--max-length", "1000"], 2, "exceeds the model's 128"),
    Fault("tokenizer-larger-than-embeddings", "error message",
          lambda t, a: ["fill-mask", "--model", str(_big_tokenizer(t, a)), "a [MASK] ."], 2, "embeds only"),
    Fault("recipe-batch-size-0", "error message",
          lambda t, a: _recipe(t, a, "train.batch_size=0") + ["--out", str(t / "run")], 2, "train.batch_size",
          absent=("run",)),
    Fault("recipe-lr-negative", "error message",
          lambda t, a: _recipe(t, a, "train.lr=-1") + ["--out", str(t / "run")], 2, "train.lr", absent=("run",)),
    Fault("recipe-seq-length-4", "error message",
          lambda t, a: _recipe(t, a, "objective.max_seq_length=4") + ["--out", str(t / "run")], 2,
          "objective.max_seq_length", absent=("run",)),
    Fault("recipe-bad-preset-before-work", "error message",
          lambda t, a: ["pretrain", str(Path(__file__).parents[2] / "recipes/pretrain/tiny.yaml"),
                        "--set", "model.preset=bert-huge", "--out", str(t / "run")], 2, "unknown preset",
          absent=("run",)),
    Fault("device-cuda-without-cuda", "error message",
          lambda t, a: _recipe(t, a, "train.device=cuda") + ["--out", str(t / "run")], 2, "CUDA is not available",
          absent=("run",), needs_no_cuda=True),
    Fault("fill-mask-top-k-negative", "error message",
          lambda t, a: ["fill-mask", "--model", str(a.mlm), "--top-k", "-3", "a [MASK] ."], 2, "must be at least 1",
          argparse=True),
    Fault("evaluate-batch-size-0", "error message",
          lambda t, a: ["evaluate", "--model", str(a.classifier), "--data", str(a.good_txt), "--batch-size", "0"],
          2, "must be at least 1", argparse=True),
    Fault("pretrain-out-is-file", "error message",
          lambda t, a: ((t / "f").write_text("x"), _recipe(t, a) + ["--out", str(t / "f")])[-1], 2, "is a file",
          unchanged=("f",)),
    Fault("features-out-is-dir", "error message",
          lambda t, a: ((t / "d").mkdir(), ["features", "--model", str(a.mlm), "--input", str(a.good_txt),
                                            "--out", str(t / "d")])[-1], 2, "is a directory"),
    Fault("predict-out-under-file", "error message",
          lambda t, a: ((t / "f").write_text("x"), ["predict", "--model", str(a.classifier), "--input",
                                                    str(a.good_txt), "--out", str(t / "f" / "p.txt")])[-1],
          2, "is a file", unchanged=("f",)),
    Fault("tokenizer-train-missing-file", "error message",
          lambda t, a: ["tokenizer", "train", "--files", str(t / "nope.txt"), "--out", str(t / "tok")], 2,
          "no such file", absent=("tok",)),
]


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(path.rglob("*")):
            digest.update(str(item.relative_to(path)).encode())
            if item.is_file():
                digest.update(item.read_bytes())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f.kind.replace(' ', '-')}:{f.id}" for f in FAULTS])
def test_fault(fault: Fault, assets: Assets, tmp_path: Path, capsys, monkeypatch):
    if fault.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(Path(__file__).parents[2])  # recipes name repository-relative corpora
    action = fault.build(tmp_path, assets)
    before = {name: _hash(tmp_path / name) for name in fault.unchanged}
    capsys.readouterr()
    if callable(action):
        try:
            result = action()
            code, err = (result if isinstance(result, int) else 0), capsys.readouterr().err
        except UserError as error:
            code, err = 2, f"error: {error}\n"
    else:
        try:
            code = main(action)
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
    assert code == fault.code, err
    assert fault.message in err, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert len(lines) == 1 if not fault.argparse else lines[-1].startswith("lmforge"), err
    for name in fault.unchanged:
        assert _hash(tmp_path / name) == before[name], f"{name} changed"
    for name in fault.absent:
        assert not (tmp_path / name).exists(), f"{name} exists"


def test_table_covers_every_class():
    kinds = {f.kind for f in FAULTS}
    assert kinds == {"security", "data loss", "silent-wrong", "error message"}
    assert len({f.id for f in FAULTS}) == len(FAULTS)
