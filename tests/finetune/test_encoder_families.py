"""Fine-tuning, features and fill-mask with RoBERTa and ALBERT checkpoints, unchanged from BERT's
commands: a tiny random roberta-tiny with a byte-level BPE and an albert-tiny with a unigram
tokenizer, both trained on the bundled samples, stand in for pretrained checkpoints.

Checked per family: sentence pairs reach the model in the family's layout (RoBERTa
``<s> A </s></s> B </s>`` in one segment, ALBERT ``[CLS] A [SEP] B [SEP]`` in two) and the
fine-tuned classifier is one transformers loads strictly; NER labels the first sub-token of
each pre-split word, which byte-level BPE encodes with its prefix space; QA answers map to
character spans through BPE offsets; features equal transformers' hidden states; fill-mask
reads the family's mask token.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

import lmforge
from lmforge.cli import main
from lmforge.features import extract_features
from lmforge.finetune import FinetuneConfig, TaskOptions, run_finetune
from lmforge.tasks import LabelMap, make_task
from lmforge.tasks.classification import read_classification
from lmforge.tasks.ner import read_conll
from lmforge.tasks.qa import read_squad
from lmforge.tokenization import Tokenizer

from finetune_samples import CONLL, MRPC, SQUAD, one_thread  # noqa: F401 (fixture)

FAMILIES = {  # preset, tokenizer kind, transformers class prefix
    "roberta": ("roberta-tiny", "byte_bpe", "Roberta"),
    "albert": ("albert-tiny", "unigram", "Albert"),
}


def sample_corpus(path: Path) -> Path:
    lines = [e.text + " " + e.pair for e in read_classification(MRPC[0])]
    lines += [" ".join(s.words) for s in read_conll(CONLL[0])]
    lines += [e.question + " " + e.context for e in read_squad(SQUAD[0])]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module", params=list(FAMILIES))
def checkpoint(request, tmp_path_factory) -> tuple[str, Path]:
    """An HF-format pretraining checkpoint of the family, with its tokenizer."""
    family = request.param
    preset, kind, _ = FAMILIES[family]
    root = tmp_path_factory.mktemp(family)
    tokenizer = Tokenizer.train([sample_corpus(root / "corpus.txt")], kind=kind, vocab_size=400, lowercase=False,
                                min_frequency=1, show_progress=False)
    model = lmforge.build(preset, seed=0, vocab_size=tokenizer.vocab_size, hidden_dropout=0.0, attention_dropout=0.0)
    return family, lmforge.save(model, root / "ckpt", tokenizer, format="hf")


def finetune(checkpoint: Path, out: Path, task: str, files, **changes) -> dict:
    settings = dict(model=str(checkpoint), task=task, train=str(files[0]), eval=str(files[1]), out=str(out),
                    epochs=3, batch_size=8, lr=5e-3, device="cpu", max_length=128)
    return run_finetune(FinetuneConfig(**{**settings, **changes}))


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_sentence_pairs_in_the_family_layout(checkpoint, tmp_path):
    family, directory = checkpoint
    tokenizer = lmforge.load_tokenizer(directory)
    pairs = read_classification(MRPC[0])
    task = make_task("classification", TaskOptions(max_length=128), LabelMap(["0", "1"]))
    for feature in task.encode(pairs[:4], tokenizer):
        ids, types = feature["input_ids"], feature["token_type_ids"]
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id
        separators = [i for i, token in enumerate(ids) if token == tokenizer.sep_id]
        if family == "roberta":  # <s> A </s></s> B </s>, one segment (RoBERTa has one type)
            assert len(separators) == 3 and separators[1] == separators[0] + 1 and set(types) == {0}
        else:  # [CLS] A [SEP] B [SEP], B in segment 1
            assert len(separators) == 2 and set(types) == {0, 1}

    out = tmp_path / "mrpc"
    finetune(directory, out, "classification", (MRPC[0], MRPC[0]), epochs=4)
    curve = losses(out)
    assert sum(curve[-2:]) / 2 < sum(curve[:2]) / 2
    model = lmforge.load_model(out / "model").eval()
    assert model.task == "sequence_classification" and model.config.family == family
    # transformers reads the fine-tuned classifier strictly and computes the same logits.
    hf_class = getattr(transformers, FAMILIES[family][2] + "ForSequenceClassification")
    reference, info = hf_class.from_pretrained(out / "model", output_loading_info=True)
    assert not any(info.values())
    batch = tokenizer([p.text for p in pairs[:3]], [p.pair for p in pairs[:3]])
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        theirs = reference.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  token_type_ids=batch["token_type_ids"]).logits
    assert (ours - theirs).abs().max() <= 1e-5


def test_ner_labels_first_subtoken_of_each_word(checkpoint, tmp_path):
    family, directory = checkpoint
    tokenizer = lmforge.load_tokenizer(directory)
    sentences = read_conll(CONLL[0])
    task = make_task("ner", TaskOptions(max_length=128), LabelMap(sorted({t for s in sentences for t in s.tags})))
    for sentence, feature in zip(sentences, task.encode(sentences, tokenizer)):
        labelled = [i for i, label in enumerate(feature["labels"]) if label != -100]
        assert len(labelled) == len(sentence.words)  # one label per word, on its first sub-token
        firsts = tokenizer.convert_ids_to_tokens([feature["input_ids"][i] for i in labelled])
        if family == "roberta":  # every pre-split word, the first too, starts with its space
            assert all(token.startswith("Ġ") for token in firsts), firsts
            plain = tokenizer.encode(" " + " ".join(sentence.words), add_special_tokens=False)["input_ids"]
            assert [t for t, w in zip(feature["input_ids"], feature["word_ids"]) if w is not None] == plain
        else:
            assert all(token.startswith("▁") for token in firsts), firsts
    out = tmp_path / "ner"
    summary = finetune(directory, out, "ner", CONLL, epochs=4)
    curve = losses(out)
    assert curve[-1] < 0.5 * curve[0]
    assert 0.0 <= summary["f1"] <= 1.0 and lmforge.load_model(out / "model").task == "token_classification"


def test_qa_answers_are_character_spans(checkpoint, tmp_path):
    _, directory = checkpoint
    tokenizer = lmforge.load_tokenizer(directory)
    examples = read_squad(SQUAD[0])
    task = make_task("qa", TaskOptions(max_length=64, doc_stride=24))
    found = 0
    for feature in task.encode(examples, tokenizer):
        if feature["start_position"] == 0:
            continue  # the answer is not in this window
        example = examples[feature["example_index"]]
        (start, _), (_, end) = feature["offsets"][feature["start_position"]], feature["offsets"][feature["end_position"]]
        # The answer's tokens cover exactly its characters (offsets trimmed of BPE's spaces).
        assert example.context[start:end] == example.answers[0]["text"], (example.id, example.context[start:end])
        found += 1
    assert found >= len(examples)
    out = tmp_path / "qa"
    summary = finetune(directory, out, "qa", SQUAD, epochs=2, max_length=64, doc_stride=24)
    predictions = json.loads((out / "predictions.json").read_text())
    contexts = {e.id: e.context for e in read_squad(SQUAD[1])}
    assert all(answer in contexts[qid] for qid, answer in predictions.items())
    assert 0.0 <= summary["exact_match"] <= summary["f1"] <= 1.0


def test_features_equal_transformers_hidden_states(checkpoint):
    family, directory = checkpoint
    model, tokenizer = lmforge.load(directory)
    texts = ["Jim Henson was a puppeteer .", "The cat sat on the mat in Paris .", "Yes"]
    features = extract_features(model, tokenizer, texts, pooling="cls", strategy="last")
    reference = getattr(transformers, FAMILIES[family][2] + "Model").from_pretrained(directory).eval()
    batch = tokenizer(texts)
    with torch.no_grad():
        hidden = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert features.vectors.shape == (3, model.config.hidden_size)
    assert abs(features.vectors - hidden[:, 0].numpy()).max() <= 1e-5


def test_fill_mask_reads_the_family_mask_token(checkpoint, capsys):
    family, directory = checkpoint
    mask = "<mask>" if family == "roberta" else "[MASK]"
    assert lmforge.load_tokenizer(directory).mask_id is not None
    assert main(["fill-mask", "--model", str(directory), "--top-k", "3", f"The cat {mask} on the mat ."]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    probs = [float(p) for _, p in lines]
    assert len(lines) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_discriminative_rates_see_shared_layers_once():
    """ULMFiT's layer groups over a shared stack: embeddings, each distinct group, the heads;
    a parameter run at several depths is still optimised once."""
    from lmforge.finetune.run import optimizer_groups

    config = lmforge.build("albert-tiny").config.replace(num_layer_groups=2, layers_per_group=2, labels=("a", "b"))
    model = lmforge.build(config, task="sequence_classification", seed=0)
    assert len(model.layer_groups()) == 4  # embeddings, 2 groups, classifier + pooler
    groups = optimizer_groups(model, FinetuneConfig(lr=1e-3, discriminative_decay=2.6))
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
