"""`lmforge finetune`, `evaluate` and `predict` from the command line, on the bundled samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lmforge
from lmforge.cli import main
from lmforge.tasks.classification import read_classification
from lmforge.tasks.ner import read_conll
from lmforge.tasks.qa import read_squad
from lmforge.tokenization import Tokenizer

from finetune_samples import CONLL, DATA, MRPC, SQUAD, SST2, one_thread  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("finetune_cli")


@pytest.fixture(scope="module")
def checkpoint(root) -> Path:
    """A tiny HF-format pretraining checkpoint whose WordPiece holds every sample word."""
    texts = [e.text + " " + (e.pair or "") for path in (*SST2, *MRPC) for e in read_classification(path)]
    texts += [" ".join(s.words) for path in CONLL for s in read_conll(path)]
    texts += [e.question + " " + e.context for path in SQUAD for e in read_squad(path)]
    words = {w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words - set(chars)), *chars,
             *("##" + c for c in chars)]
    (root / "vocab").mkdir()
    (root / "vocab/vocab.txt").write_text("".join(token + "\n" for token in vocab))
    tokenizer = Tokenizer.from_dir(root / "vocab")
    model = lmforge.build("bert-test", task="pretraining", seed=0, vocab_size=tokenizer.vocab_size,
                          hidden_dropout=0.0, attention_dropout=0.0)
    return lmforge.save(model, root / "ckpt", tokenizer, format="hf")


def finetune(checkpoint: Path, out: Path, task: str, files, *flags: str) -> dict:
    code = main(["finetune", "--model", str(checkpoint), "--task", task, "--train", str(files[0]),
                 "--eval", str(files[1]), "--out", str(out), "--batch-size", "8", "--device", "cpu", *flags])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def classifier(root, checkpoint) -> Path:
    """SST-2 sample fine-tuned from a recipe, one value overridden on the command line."""
    recipe = root / "sst2.yaml"
    recipe.write_text(f"task: classification\ntrain: {SST2[0]}\neval: {SST2[1]}\nepochs: 1\nbatch_size: 8\n"
                      "lr: 5.0e-3\nmax_length: 64\ndevice: cpu\n")
    out = root / "sst2"
    assert main(["finetune", "--recipe", str(recipe), "--model", str(checkpoint), "--out", str(out),
                 "--epochs", "6"]) == 0
    return out


def test_recipe_with_flag_overrides(classifier):
    summary = json.loads((classifier / "metrics.json").read_text())
    settings = summary["settings"]
    assert settings["epochs"] == 6 and summary["epochs_run"] == 6  # the flag wins
    assert settings["lr"] == 5e-3 and settings["max_length"] == 64  # the recipe's values stay
    assert summary["accuracy"] >= 0.75
    assert (classifier / "model/config.json").is_file() and (classifier / "curves.png").is_file()


def test_evaluate_prints_and_writes_metrics(classifier, tmp_path, capsys):
    summary = json.loads((classifier / "metrics.json").read_text())
    assert main(["evaluate", "--model", str(classifier / "model"), "--data", str(SST2[1]), "--device", "cpu"]) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert printed["task"] == "classification"
    assert float(printed["accuracy"]) == pytest.approx(summary["accuracy"], abs=1e-4)
    written = json.loads((classifier / "model/metrics.json").read_text())  # beside the model by default
    assert written["accuracy"] == pytest.approx(summary["accuracy"]) and written["examples"] == 12

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(classifier / "model"), "--task", "classification",
                 "--data", str(SST2[1]), "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == pytest.approx(summary["accuracy"])
    assert (out / "predictions.tsv").read_text() == (classifier / "predictions.tsv").read_text()


def test_predict_classification(classifier, tmp_path, capsys):
    dev = read_classification(SST2[1])
    inputs = tmp_path / "texts.txt"
    inputs.write_text("".join(e.text + "\n" for e in dev))
    assert main(["predict", "--model", str(classifier / "model"), "--input", str(inputs), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(dev)
    written = [row.split("\t") for row in (classifier / "predictions.tsv").read_text().splitlines()[1:]]
    for line, row in zip(lines, written):
        label, probability = line.split("\t")
        assert label == row[2] and float(probability) == pytest.approx(float(row[3]), abs=2e-6)
    out = tmp_path / "labels.txt"
    assert main(["predict", "--model", str(classifier / "model"), "--input", str(inputs), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert out.read_text().splitlines() == lines


def test_pairs_end_to_end(root, checkpoint, tmp_path, capsys):
    out = root / "mrpc"
    summary = finetune(checkpoint, out, "classification", MRPC, "--epochs", "1")
    assert summary["labels"] == ["0", "1"] and "f1" in summary
    inputs = tmp_path / "pairs.tsv"
    inputs.write_text("The bus fares went up.\tFares on buses rose.\nA dog barked.\tThe sea was calm.\n")
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "model"), "--input", str(inputs), "--pair", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("0", "1") for line in lines)
    inputs.write_text("no tab here\n")
    assert main(["predict", "--model", str(out / "model"), "--input", str(inputs), "--pair"]) == 2
    assert "--pair needs" in capsys.readouterr().err


def test_ner_end_to_end(root, checkpoint, tmp_path, capsys):
    out = root / "ner"
    summary = finetune(checkpoint, out, "ner", CONLL, "--epochs", "2", "--lr", "5e-3")
    assert 0.0 <= summary["f1"] <= 1.0
    assert (out / "predictions.conll").is_file()
    inputs = tmp_path / "sentences.txt"
    inputs.write_text("Maria visited Oslo in the spring .\nKwame works for Northwind .\n")
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "model"), "--input", str(inputs), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = set(lmforge.load_model(out / "model").config.labels)
    assert len(lines) == 2
    for line, sentence in zip(lines, inputs.read_text().splitlines()):
        pairs = [item.rsplit("/", 1) for item in line.split()]
        assert [word for word, _ in pairs] == sentence.split()
        assert all(tag in labels for _, tag in pairs)
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(CONLL[1]), "--device", "cpu"]) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert float(printed["f1"]) == pytest.approx(summary["f1"], abs=1e-4)


def test_qa_end_to_end(root, checkpoint, tmp_path, capsys):
    out = root / "qa"
    summary = finetune(checkpoint, out, "qa", SQUAD, "--epochs", "2", "--lr", "5e-3", "--max-length", "48",
                       "--doc-stride", "16")
    assert 0.0 <= summary["exact_match"] <= summary["f1"] <= 1.0
    # Questions without answers: predict needs none.
    document = json.loads(SQUAD[1].read_text())
    for paragraph in document["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            del qa["answers"]
    inputs = tmp_path / "questions.json"
    inputs.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "model"), "--input", str(inputs), "--max-length", "48",
                 "--doc-stride", "16", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    examples = read_squad(SQUAD[1])
    assert [line.split("\t")[0] for line in lines] == [e.id for e in examples]
    predicted = json.loads((out / "predictions.json").read_text())
    assert [line.split("\t", 1)[1] for line in lines] == [" ".join(predicted[e.id].split()) for e in examples]
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(SQUAD[1]), "--max-length", "48",
                 "--doc-stride", "16", "--device", "cpu"]) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert float(printed["f1"]) == pytest.approx(summary["f1"], abs=1e-4)


def test_mistakes_exit_2_with_one_line(root, checkpoint, classifier, tmp_path, capsys):
    def error(*argv: str) -> str:
        assert main(list(argv)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    base = ["finetune", "--model", str(checkpoint), "--device", "cpu"]
    assert "no such file" in error(*base, "--task", "classification", "--train", str(tmp_path / "nope.tsv"),
                                   "--eval", str(SST2[1]), "--out", str(tmp_path / "a"))
    assert "--task ner reads CoNLL" in error(*base, "--task", "ner", "--train", str(SST2[0]), "--eval",
                                             str(SST2[1]), "--out", str(tmp_path / "b"))
    assert "no column 'review'" in error(*base, "--task", "classification", "--train", str(SST2[0]), "--eval",
                                         str(SST2[1]), "--out", str(tmp_path / "c"), "--text-column", "review")
    assert "missing --train" in error(*base, "--task", "classification", "--eval", str(SST2[1]),
                                      "--out", str(tmp_path / "d"))
    assert "already holds a fine-tuning run" in error(*base, "--task", "classification", "--train", str(SST2[0]),
                                                      "--eval", str(SST2[1]), "--out", str(classifier))
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: classification\nepoch: 3\n")
    assert "unknown recipe key epoch" in error("finetune", "--recipe", str(recipe))
    recipe.write_text("task: sentiment\n")
    assert "task must be one of" in error("finetune", "--recipe", str(recipe))
    bare = tmp_path / "bare"
    lmforge.save(lmforge.load_model(checkpoint), bare, format="hf")
    assert "no tokenizer files" in error("evaluate", "--model", str(bare), "--task", "classification",
                                         "--data", str(SST2[1]))
    assert "--task ner needs a token_classification model" in error(
        "evaluate", "--model", str(classifier / "model"), "--task", "ner", "--data", str(CONLL[1]))
    assert "--task classification reads" in error("evaluate", "--model", str(classifier / "model"),
                                                  "--data", str(CONLL[1]))
    assert "no such file" in error("predict", "--model", str(classifier / "model"), "--input", str(tmp_path / "x"))


@pytest.mark.parametrize("command", ["finetune", "evaluate", "predict"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_bundled_recipes_validate_and_the_tiny_one_runs(checkpoint, tmp_path, monkeypatch):
    from lmforge.finetune import FinetuneConfig
    from lmforge.recipes import build_dataclass, read_yaml

    recipes = sorted((DATA.parent / "recipes/finetune").glob("*.yaml"))
    assert {r.stem for r in recipes} >= {"sst2", "mrpc", "rte", "conll2003", "squad", "sst2-ulmfit", "tiny"}
    tasks = {r.stem: build_dataclass(FinetuneConfig, read_yaml(r)).task for r in recipes}
    assert (tasks["conll2003"], tasks["squad"], tasks["mrpc"]) == ("ner", "qa", "classification")
    ulmfit = build_dataclass(FinetuneConfig, read_yaml(DATA.parent / "recipes/finetune/sst2-ulmfit.yaml"))
    assert ulmfit.discriminative_decay == 2.6 and ulmfit.schedule == "slanted_triangular"
    assert ulmfit.gradual_unfreezing
    monkeypatch.chdir(DATA.parent)  # the tiny recipe names the bundled sample by relative path
    out = tmp_path / "tiny"
    assert main(["finetune", "--recipe", "recipes/finetune/tiny.yaml", "--model", str(checkpoint), "--out", str(out),
                 "--epochs", "1", "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["eval_examples"] == 12
