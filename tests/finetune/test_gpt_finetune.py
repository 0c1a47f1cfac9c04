"""GPT-style fine-tuning of a decoder (Radford et al. 2018, section 3.3) through `run_finetune`:
start/delimiter/extract inputs and the last token's state for classification and entailment,
both orders for similarity, one sequence per answer for multiple choice, the auxiliary LM
loss; the last-token pooling under left and right padding; the multiple-choice reader's errors.

Tiny random decoders of the real presets (gpt2-tiny; llama-tiny, whose head is untied; dropout
off) with a byte-level BPE trained on the samples stand in for GPT-2/LLaMA checkpoints. Their
fine-tuned classifiers are saved in the layout transformers' GPT2ForSequenceClassification /
LlamaForSequenceClassification load, with the same logits; multiple choice, for which
transformers has no decoder class, in lmforge's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lmforge
from lmforge.errors import UserError
from lmforge.families import get_preset
from lmforge.finetune import FinetuneConfig, evaluate_model, predict_file, run_finetune
from lmforge.models.build import build_model
from lmforge.tasks import LabelMap, make_task
from lmforge.tasks.base import TaskOptions
from lmforge.tasks.classification import read_classification
from lmforge.tasks.gpt_inputs import GptTokens, transform
from lmforge.tasks.multiple_choice import read_multiple_choice
from lmforge.tokenization import Tokenizer

from finetune_samples import MRPC, SST2, one_thread  # noqa: F401 (fixture)

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0)
LR = {"gpt2-tiny": 3e-3, "llama-tiny": 1e-3}  # at 3e-3 llama-tiny overfits by epoch 2 (9/12)
HF_CLASSES = {"gpt2-tiny": "GPT2ForSequenceClassification", "llama-tiny": "LlamaForSequenceClassification"}

GOOD, BAD = ["sunny", "bright", "warm", "golden"], ["cold", "dark", "wet", "grey"]
FILLER = "the day in the town was long and the people walked to the market".split()


def choice_examples(n: int, seed: int) -> list[dict]:
    """A separable toy set: the right answer is the one made of 'good' words."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        context = " ".join(rng.choice(FILLER, size=6))
        right = " ".join(rng.choice(GOOD, size=2))
        wrong = [" ".join(rng.choice(BAD, size=2)) for _ in range(2)]
        label = int(rng.integers(3))
        choices = wrong[:label] + [right] + wrong[label:]
        rows.append({"context": context, "question": "what was the weather?", "choices": choices, "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """gpt2-tiny and llama-tiny checkpoints on one byte-level BPE trained on the samples."""
    root = tmp_path_factory.mktemp("gpt-finetune")
    texts = [e.text for path in (*SST2, *MRPC) for e in read_classification(path)]
    texts += [e.pair for e in read_classification(MRPC[0])]
    texts += [" ".join([r["context"], r["question"], *r["choices"]]) for r in choice_examples(50, 0)]
    corpus = root / "texts.txt"
    corpus.write_text("\n".join(texts) + "\n")
    tokenizer = Tokenizer.train([corpus], kind="gpt2_byte_bpe", vocab_size=500, lowercase=True, show_progress=False)
    saved = {}
    for preset in HF_CLASSES:
        config = get_preset(preset).replace(vocab_size=tokenizer.vocab_size, pad_token_id=None,
                                            eos_token_id=tokenizer.eos_id, bos_token_id=tokenizer.bos_id, **NO_DROPOUT)
        saved[preset] = lmforge.save(build_model(config, "causal_lm", seed=0), root / preset, tokenizer)
    return saved


@pytest.fixture
def decoder_checkpoint(checkpoints) -> Path:
    return checkpoints["gpt2-tiny"]


def config(checkpoint, out, task="classification", files=SST2, **changes) -> FinetuneConfig:
    settings = dict(model=str(checkpoint), task=task, train=str(files[0]), eval=str(files[1]), out=str(out),
                    epochs=8, batch_size=8, lr=3e-3, device="cpu", max_length=64)
    settings.update(changes)
    return FinetuneConfig(**settings)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_gpt_input_layout(decoder_checkpoint):
    tokenizer = lmforge.load_tokenizer(decoder_checkpoint)
    tokens = GptTokens.from_tokenizer(tokenizer)
    eot = tokenizer.token_to_id("<|endoftext|>")
    assert tokens == GptTokens(eot, eot, eot)  # GPT-2's one special token plays all three
    assert transform([5, 6, 7], None, tokens, 10) == [eot, 5, 6, 7, eot]
    assert transform([5, 6, 7], [8, 9], tokens, 10) == [eot, 5, 6, 7, eot, 8, 9, eot]
    assert transform([5, 6, 7, 8], [9], tokens, 5) == [eot, 5, eot, 9, eot]  # the longer part is cut
    with pytest.raises(UserError, match="no room"):
        transform([5], [6], tokens, 4)


@pytest.mark.parametrize("preset", HF_CLASSES)
def test_classification_from_the_last_token_beats_chance(checkpoints, tmp_path, preset):
    summary = run_finetune(config(checkpoints[preset], tmp_path / "sst2", lr=LR[preset]))
    # 12 dev sentences, one keyword each: chance is 6/12 (measured: 10/12 for both presets).
    assert summary["accuracy"] >= 10 / 12, summary
    model = lmforge.load_model(tmp_path / "sst2" / "model")
    assert model.task == "sequence_classification" and model.config.pooling == "last"
    again = evaluate_model(tmp_path / "sst2" / "model", None, SST2[1], device="cpu")
    assert again["accuracy"] == pytest.approx(summary["accuracy"])
    _transformers_gives_the_same_logits(tmp_path / "sst2" / "model", HF_CLASSES[preset])


def _transformers_gives_the_same_logits(directory: Path, architecture: str) -> None:
    """transformers' class loads the exported classifier; its logits, one unpadded row at a time
    (no pad token: transformers reads the last token), equal lmforge's on a right-padded batch."""
    transformers = pytest.importorskip("transformers")
    assert json.loads((directory / "config.json").read_text())["architectures"] == [architecture]
    reference = getattr(transformers, architecture).from_pretrained(directory).eval()
    model, tokenizer = lmforge.load(directory)
    tokens = GptTokens.from_tokenizer(tokenizer)
    texts = [e.text for e in read_classification(SST2[1])]
    rows = [transform(tokenizer.encode_plain([text])[0], None, tokens, 64) for text in texts]
    ids = torch.full((len(rows), max(map(len, rows))), tokens.extract)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
    with torch.no_grad():
        ours = model.eval()(ids, mask)
        theirs = torch.cat([reference(input_ids=torch.tensor([row])).logits for row in rows])
    assert (ours - theirs).abs().max() <= 1e-5


def test_entailment_similarity_and_the_auxiliary_lm_loss(decoder_checkpoint, tmp_path):
    out = tmp_path / "mrpc"
    summary = run_finetune(config(decoder_checkpoint, out, files=MRPC, symmetric_pairs=True, lm_loss_weight=0.5,
                                  epochs=4))
    logged = [r for r in records(out) if "lm_loss" in r]
    assert logged and all(r["loss"] == pytest.approx(r["classification_loss"] + r["lm_loss"]) for r in logged)
    assert logged[-1]["lm_loss"] < logged[0]["lm_loss"]  # the weighted LM term is trained too
    assert 0 <= summary["accuracy"] <= 1
    # Both orders: the two states are added, so swapping every pair changes nothing.
    task = make_task("classification", TaskOptions(max_length=64, symmetric_pairs=True))
    model, tokenizer = lmforge.load(out / "model")
    task.configure_for(model, tokenizer)
    task.labels = LabelMap(list(model.config.labels))
    examples = read_classification(MRPC[1])
    features = task.encode(examples, tokenizer)
    swapped = [{**f, "input_ids": f["swapped_ids"], "swapped_ids": f["input_ids"]} for f in features]
    with torch.no_grad():
        a = task.infer_batch(model.eval(), task.collate(features), unpad=True)[0]
        b = task.infer_batch(model, task.collate(swapped), unpad=True)[0]
    assert np.allclose(np.stack(a), np.stack(b), atol=1e-5)


def test_auxiliary_lm_loss_is_refused_for_an_untied_head(checkpoints, tmp_path):
    """LLaMA's classifier keeps no output projection: GPT's tied one would score with the input
    embeddings, which are not LLaMA's output layer."""
    with pytest.raises(UserError, match="lm_loss_weight needs a decoder whose output projection is tied"):
        run_finetune(config(checkpoints["llama-tiny"], tmp_path / "out", lm_loss_weight=0.5, epochs=1))


def test_multiple_choice_beats_chance(decoder_checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", choice_examples(48, 1))
    dev = write_jsonl(tmp_path / "dev.jsonl", choice_examples(18, 2))
    out = tmp_path / "mc"
    summary = run_finetune(config(decoder_checkpoint, out, task="multiple_choice", files=(train, dev), epochs=6,
                                  lm_loss_weight=0.5))
    assert summary["accuracy"] >= 0.8, summary  # chance: 1/3 (measured: 18/18)
    assert summary["labels"] == []
    model = lmforge.load_model(out / "model")
    assert model.task == "multiple_choice"
    rows = (out / "predictions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["context", "gold", "predicted", "predicted_answer", "probability"]
    lines = predict_file(out / "model", None, dev, device="cpu")
    assert len(lines) == 18 and all(0 <= int(line.split("\t")[0]) < 3 for line in lines)


def test_multiple_choice_on_an_encoder_runs(tmp_path):
    """BERT's SWAG layout: [CLS] context [SEP] answer [SEP], the pooled vector scored; the best
    model is saved in the layout transformers' BertForMultipleChoice loads."""
    from test_finetune import word_tokenizer

    tokenizer = word_tokenizer(tmp_path / "vocab")
    model = lmforge.build("bert-test", task="pretraining", seed=0, vocab_size=tokenizer.vocab_size,
                          hidden_dropout=0.0, attention_dropout=0.0)
    checkpoint = lmforge.save(model, tmp_path / "ckpt", tokenizer)
    rows = [{"context": "a wonderful film", "choices": ["the plot is dull", "a wonderful film"], "label": 1}] * 8
    data = write_jsonl(tmp_path / "mc.jsonl", rows)
    summary = run_finetune(config(checkpoint, tmp_path / "out", task="multiple_choice", files=(data, data),
                                  epochs=1, batch_size=4))
    assert 0 <= summary["accuracy"] <= 1
    config_json = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert config_json["architectures"] == ["BertForMultipleChoice"]
    with pytest.raises(UserError, match="GPT's decoder fine-tuning options"):
        run_finetune(config(checkpoint, tmp_path / "out2", task="multiple_choice", files=(data, data),
                            lm_loss_weight=0.5))


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_pooling_under_padding(side):
    config = get_preset("gpt2-tiny").replace(labels=("a", "b"), pad_token_id=0, **NO_DROPOUT)
    model = build_model(config, "sequence_classification", seed=0).eval()
    rows = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    ids = torch.zeros(3, 5, dtype=torch.long)
    mask = torch.zeros(3, 5, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0 if side == "right" else 5 - len(row)
        ids[r, at:at + len(row)] = torch.tensor(row)
        mask[r, at:at + len(row)] = 1
    with torch.no_grad():
        alone = torch.cat([model(torch.tensor([row])) for row in rows])
        for unpad in (False, True):
            assert torch.allclose(model(ids, mask, unpad=unpad), alone, atol=1e-5), (side, unpad)


@pytest.mark.parametrize("line, message", [
    ("not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"choices": ["a", "b"], "label": 0}', "'context' must be a non-empty string"),
    ('{"context": "c", "choices": ["a"], "label": 0}', "at least two answers"),
    ('{"context": "c", "choices": ["a", ""], "label": 0}', "choice 1 must be a non-empty string"),
    ('{"context": "c", "choices": ["a", "b"]}', "no 'label'"),
    ('{"context": "c", "choices": ["a", "b"], "label": 2}', "from 0 to 1, got 2"),
    ('{"context": "c", "choices": ["a", "b"], "label": true}', "from 0 to 1, got True"),
    ('{"context": "c", "question": 3, "choices": ["a", "b"], "label": 0}', "'question' must be a string"),
])
def test_multiple_choice_reader_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "mc.jsonl"
    path.write_text('{"context": "fine", "endings": ["a", "b"], "label": "1"}\n' + line + "\n")
    with pytest.raises(UserError, match=message) as error:
        read_multiple_choice(path)
    assert str(error.value).startswith(f"{path}:2: ") and "\n" not in str(error.value)


def test_multiple_choice_reader_accepts_the_variants(tmp_path):
    path = write_jsonl(tmp_path / "mc.jsonl", [
        {"context": "story", "question": "end?", "endings": ["a", "b", "c"], "label": "2"},
        {"context": "story", "choices": ["x", "y"], "label": 0}])
    first, second = read_multiple_choice(path)
    assert (first.context, first.choices, first.label) == ("story end?", ("a", "b", "c"), 2)
    assert (second.choices, second.label) == (("x", "y"), 0)
    with pytest.raises(UserError, match=r"reads \.jsonl files"):
        read_multiple_choice(tmp_path / "mc.tsv")


def test_bert_multiple_choice_head_equals_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = get_preset("bert-test").replace(hidden_dropout=0.0, attention_dropout=0.0)
    model = build_model(config, "multiple_choice", seed=0).eval()
    lmforge.save(model, tmp_path / "hf", format="hf")
    reference = transformers.BertForMultipleChoice.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(5, 1000, (2, 3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (reference(input_ids=ids).logits - model(ids.flatten(0, 1)).view(2, 3)).abs().max()
    assert difference <= 1e-5
    assert lmforge.load_model(tmp_path / "hf").task == "multiple_choice"


def test_command_line(decoder_checkpoint, tmp_path, capsys):
    """`lmforge finetune --task multiple_choice --lm-loss-weight 0.5`, `predict`, and a reader
    mistake as one line (exit 2)."""
    from lmforge.cli import main

    train = write_jsonl(tmp_path / "train.jsonl", choice_examples(16, 3))
    dev = write_jsonl(tmp_path / "dev.jsonl", choice_examples(6, 4))
    out = tmp_path / "mc"
    assert main(["finetune", "--model", str(decoder_checkpoint), "--task", "multiple_choice", "--train", str(train),
                 "--eval", str(dev), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                 "--lm-loss-weight", "0.5", "--max-length", "48"]) == 0
    assert json.loads((out / "metrics.json").read_text())["settings"]["lm_loss_weight"] == 0.5
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "model"), "--input", str(dev), "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "c", "choices": ["a", "b"], "label": 0}\n{"context": "c", "choices": "ab"}\n')
    assert main(["finetune", "--model", str(decoder_checkpoint), "--task", "multiple_choice", "--train", str(bad),
                 "--eval", str(dev), "--out", str(tmp_path / "bad"), "--device", "cpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {bad}:2: 'choices' must be a list of at least two answers"]
