"""`--task seq2seq` (lmforge.tasks.seq2seq): a tiny BART learns the bundled copy task from
scratch; a tiny T5 answers SST-2 as words ("positive"); teacher-forcing layout, label
smoothing, the metrics, and the bad-input rules (empty sides skipped with a count, long
targets cut with a count, a missing JSONL field named by file:line) through the API and CLI."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from tokenizers import models

import lmforge
from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.families import get_preset
from lmforge.finetune import FinetuneConfig, evaluate_model, predict_file, run_finetune
from lmforge.models.build import build_model
from lmforge.tasks import TaskOptions, make_task
from lmforge.tasks.seq2seq import bleu_score, parse_label_words, read_pairs, rouge_scores, split_sentences
from lmforge.tasks.source_encoder import TwoStages, in_stage1, with_source_encoder
from lmforge.tokenization import Tokenizer
from lmforge.tokenization.kinds import PipelineOptions, get_kind
from lmforge.tokenization.train import role_ids

from finetune_samples import DATA, one_thread  # noqa: F401 (fixture)

TOY = DATA / "seq2seq-toy"
COPY = (TOY / "copy-train.tsv", TOY / "copy-dev.tsv")
NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0)
SMALL = dict(hidden_size=64, num_heads=4, intermediate_size=128, **NO_DROPOUT)


def _train_tokenizer(root: Path, texts: list[str], kind: str, vocab_size: int) -> Tokenizer:
    corpus = root / f"{kind}.txt"
    corpus.write_text("\n".join(texts) + "\n")
    return Tokenizer.train([corpus], kind=kind, vocab_size=vocab_size, show_progress=False)


@pytest.fixture(scope="module")
def bart(tmp_path_factory) -> Path:
    """bart-tiny at width 64 over a byte-level BPE of the toy letters."""
    root = tmp_path_factory.mktemp("seq2seq")
    texts = [side for line in COPY[0].read_text().splitlines() for side in line.split("\t")]
    tokenizer = _train_tokenizer(root, texts, "byte_bpe", 300)
    config = get_preset("bart-tiny").replace(vocab_size=tokenizer.vocab_size, max_positions=32, **SMALL)
    return lmforge.save(build_model(config, "seq2seq_lm", seed=0), root / "bart", tokenizer)


def settings(checkpoint: Path, out: Path, files=COPY, **changes) -> FinetuneConfig:
    values = dict(model=str(checkpoint), task="seq2seq", train=str(files[0]), eval=str(files[1]), out=str(out),
                  epochs=5, batch_size=16, lr=3e-3, schedule="constant", warmup_fraction=0.0, device="cpu",
                  metric="accuracy", num_beams=2, max_target_length=16)
    values.update(changes)
    return FinetuneConfig(**values)


def test_a_tiny_bart_learns_to_copy(bart, tmp_path):
    summary = run_finetune(settings(bart, tmp_path / "copy"))
    # 40 dev sequences of 2-6 letters; an untrained model gets none (measured: 40/40 by epoch 4).
    assert summary["accuracy"] >= 0.9, summary
    assert summary["task"] == "seq2seq" and summary["metric"] == "accuracy"
    lines = (tmp_path / "copy" / "predictions.tsv").read_text().splitlines()
    assert lines[0] == "source\ttarget\tpredicted" and len(lines) == 41
    right = [line for line in lines[1:] if line.split("\t")[1] == line.split("\t")[2]]
    assert len(right) == round(summary["accuracy"] * 40)
    model = tmp_path / "copy" / "model"
    again = evaluate_model(model, None, COPY[1], options=TaskOptions(metric="accuracy", num_beams=2,
                                                                     max_target_length=16), device="cpu")
    assert again["accuracy"] == pytest.approx(summary["accuracy"])
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a b c\nj i h g\n")
    assert predict_file(model, None, inputs, options=TaskOptions(num_beams=2, max_target_length=16),
                        device="cpu") == ["a b c", "j i h g"]


def _contains_a(path: Path, count: int, seed: int) -> Path:
    """A classification file in SST-2's layout: 2-6 letters, label 1 when one of them is 'a'."""
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for _ in range(count):
        words, label = [rng.choice("bcdefghij") for _ in range(rng.randint(2, 6))], rng.randint(0, 1)
        if label:
            words[rng.randrange(len(words))] = "a"
        lines.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _t5_word_tokenizer(words: list[str]) -> Tokenizer:
    """T5's SentencePiece pipeline over a fixed unigram vocabulary (one piece per word, then
    characters): trained unigram vocabularies differ from run to run on a corpus this small."""
    kind = get_kind("t5_unigram")
    options = PipelineOptions(lowercase=True)
    pieces = [(token, 0.0) for token in kind.specials.leading] + [("\u2581" + w, -1.0) for w in words]
    pieces += [("\u2581", -5.0)] + [(c, -8.0) for c in sorted({c for w in words for c in w})]
    backend = kind.pipeline(models.Unigram(pieces, unk_id=kind.specials.leading.index("<unk>")), options)
    backend.add_special_tokens([*kind.specials.leading, *kind.specials.sentinels.tokens()[::-1]])
    backend.post_processor = kind.layout.build(role_ids(backend, kind), options)
    return Tokenizer(backend, kind.name, lowercase=True)


def test_t5_text_to_text_classification(tmp_path):
    """T5's classification as text: 'find: ...' -> 'no' / 'yes', accuracy from the generated words."""
    files = (_contains_a(tmp_path / "train.tsv", 400, 0), _contains_a(tmp_path / "dev.tsv", 40, 1))
    tokenizer = _t5_word_tokenizer([*"abcdefghij", "no", "yes", "find:"])
    config = get_preset("t5-tiny").replace(vocab_size=tokenizer.vocab_size, head_dim=16, **SMALL)
    checkpoint = lmforge.save(build_model(config, "seq2seq_lm", seed=0), tmp_path / "t5", tokenizer)
    summary = run_finetune(settings(checkpoint, tmp_path / "find", files=files, epochs=5, label_words="no,yes",
                                    source_prefix="find: ", metric=None, num_beams=1, max_target_length=8))
    assert summary["metric"] == "accuracy"
    # 40 dev rows, half with an 'a': chance is 1/2 (measured: 40/40 at epoch 4).
    assert summary["accuracy"] >= 0.9, summary
    rows = [line.split("\t") for line in (tmp_path / "find" / "predictions.tsv").read_text().splitlines()[1:]]
    sentence, label = files[1].read_text().splitlines()[1].split("\t")
    assert rows[0][:2] == [sentence, ["no", "yes"][int(label)]]  # the source as read, the label as its word
    # evaluate reads the prefix, label words and metric the model was fine-tuned with
    again = evaluate_model(tmp_path / "find" / "model", None, files[1], options=TaskOptions(num_beams=1), device="cpu")
    assert again["accuracy"] == pytest.approx(summary["accuracy"])


def test_teacher_forcing_layout_and_label_smoothing(bart, tmp_path):
    model, tokenizer = lmforge.load(bart)
    task = make_task("seq2seq", TaskOptions(label_smoothing=0.1))
    task.pad_id = tokenizer.pad_id
    task.configure_for(model, tokenizer)
    examples = task.read(COPY[1])[:3]
    features = task.encode(examples, tokenizer)
    for example, feature in zip(examples, features):
        assert feature["labels"] == tokenizer.encode(example.target)["input_ids"]  # <s> target </s>
        assert feature["decoder_input_ids"] == [model.config.decoder_start_token_id, *feature["labels"][:-1]]
    batch = task.collate(features)
    logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                   batch["decoder_attention_mask"])
    real = batch["labels"] != -100
    log_probs = logits.float().log_softmax(-1)[real]
    gold = batch["labels"][real]
    nll = -log_probs.gather(1, gold[:, None]).squeeze(1)
    expected = (0.9 * nll - 0.1 * log_probs.mean(-1)).sum()  # transformers' LabelSmoother, summed
    assert task.counts(batch) == {"seq2seq": int(real.sum())}
    assert torch.allclose(task.loss_sums(model, batch, unpad=True)["seq2seq"], expected, atol=1e-4)
    unsmoothed = F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), reduction="sum")
    assert torch.allclose(nll.sum(), unsmoothed, atol=1e-4)


def test_long_targets_are_cut_with_a_count(bart, tmp_path, capsys):
    model, tokenizer = lmforge.load(bart)
    data = tmp_path / "long.tsv"
    data.write_text("a b\ta b\nc d\t" + " ".join("abcdefghij" * 4) + "\n")
    task = make_task("seq2seq", TaskOptions(max_target_length=64))
    task.pad_id = tokenizer.pad_id
    task.configure_for(model, tokenizer)  # the decoder's 32 positions win over 64
    features = task.encode(task.read(data), tokenizer)
    assert "cut 1 of 2 target(s) to 32 tokens" in capsys.readouterr().err
    assert len(features[1]["labels"]) == 32 and features[1]["labels"][-1] == tokenizer.eos_id
    assert len(features[0]["labels"]) < 32


def test_reader_skips_empty_sides_and_names_bad_lines(tmp_path, capsys):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("a b\tb a\n\tx\ny\t \n\nc\td\n")
    assert [(e.source, e.target, e.line) for e in read_pairs(tsv)] == [("a b", "b a", 1), ("c", "d", 5)]
    assert "left out 3 example(s) with an empty source or target" in capsys.readouterr().err
    tsv.write_text("\tx\n \t \n")
    with pytest.raises(UserError, match=r"no examples with both a source and a target \(2 empty\)"):
        read_pairs(tsv)
    tsv.write_text("a\tb\nno tab here\n")
    with pytest.raises(UserError, match=r"pairs.tsv:2: expected 'source<TAB>target', found 1"):
        read_pairs(tsv)
    jsonl = tmp_path / "pairs.jsonl"
    rows = [{"dialogue": "hi", "summary": "greeting"}, {"dialogue": "x"}]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(UserError, match=r"pairs.jsonl:2: no field 'summary'"):
        read_pairs(jsonl, "dialogue", "summary")
    with pytest.raises(UserError, match=r"pairs.jsonl:1: no field 'source'"):
        read_pairs(jsonl)
    with pytest.raises(UserError, match="reads .jsonl or .tsv"):
        read_pairs(tmp_path / "pairs.csv")


def test_metrics_and_label_words():
    assert rouge_scores(["the cat sat. it slept."], ["the cat sat. it slept."]) == pytest.approx(
        {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "rougeLsum": 100.0})
    assert split_sentences("The cat sat. It slept! Why?") == "The cat sat.\nIt slept!\nWhy?"
    # Lsum reads sentences: two sentences in swapped order keep every in-sentence LCS.
    swapped = rouge_scores(["a b c. d e f."], ["d e f. a b c."])
    assert swapped["rougeLsum"] == pytest.approx(100.0) and swapped["rougeL"] < 100.0
    assert bleu_score(["a man rides a red bike ."], ["a man rides a red bike ."])["bleu"] == pytest.approx(100.0)
    assert 0 < bleu_score(["a man rides a red bike ."], ["a man rides a bike ."])["bleu"] < 100
    assert parse_label_words("negative,positive") == {"0": "negative", "1": "positive"}
    assert parse_label_words("neg=bad, pos=good") == {"neg": "bad", "pos": "good"}
    with pytest.raises(UserError, match="one non-empty word of its own"):
        parse_label_words("yes,yes")
    with pytest.raises(UserError, match="unknown metric"):
        make_task("seq2seq", TaskOptions(metric="meteor"))


def test_cli_errors_are_one_line(bart, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"source": "a", "target": "a"}) + "\n" + json.dumps({"source": "b"}) + "\n")
    code = main(["finetune", "--model", str(bart), "--task", "seq2seq", "--train", str(bad), "--eval", str(bad),
                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"{bad}:2: no field 'target'" in err
    code = main(["finetune", "--model", str(bart), "--task", "classification", "--train", str(COPY[0]),
                 "--eval", str(COPY[1]), "--out", str(tmp_path / "out2"), "--label-smoothing", "0.1"])
    assert code != 0 and "label_smoothing is a --task seq2seq setting" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# BART's machine translation: a new source encoder, two stages (lmforge.tasks.source_encoder)


@pytest.fixture(scope="module")
def source_tokenizer_dir(tmp_path_factory) -> Path:
    """The 'foreign' vocabulary: a WordPiece over the toy letters, unlike BART's byte-level BPE."""
    root = tmp_path_factory.mktemp("source-tokenizer")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghij"]
    (root / "vocab.txt").write_text("".join(token + "\n" for token in vocab))
    return root


def test_stage1_changes_only_the_papers_parameters(bart, source_tokenizer_dir):
    model, tokenizer = lmforge.load(bart)
    source_tokenizer = Tokenizer.from_dir(source_tokenizer_dir)
    translation = with_source_encoder(model, 2, source_tokenizer, seed=0)
    before = {name: p.detach().clone() for name, p in translation.named_parameters()}
    for name, tensor in model.state_dict().items():  # BART's own weights carried over unchanged
        assert torch.equal(translation.state_dict()[name], tensor), name
    task = make_task("seq2seq", TaskOptions())
    task.pad_id = tokenizer.pad_id
    task.configure_for(translation, tokenizer)
    features = task.encode(task.read(COPY[0])[:32], tokenizer)
    assert features[0]["input_ids"][0] == source_tokenizer.cls_id  # sources in the new vocabulary
    stages = TwoStages(translation, stage1_epochs=1)
    stages.on_epoch(0)
    optimizer = torch.optim.AdamW(translation.parameters(), lr=1e-2, weight_decay=0.01)
    for start in range(0, 32, 8):
        batch = task.collate(features[start:start + 8])
        loss = task.loss_sums(translation, batch, unpad=True)["seq2seq"] / task.counts(batch)["seq2seq"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    changed = {name for name, p in translation.named_parameters() if not torch.equal(p, before[name])}
    allowed = {name for name in before if in_stage1(name)}
    assert changed == allowed
    assert {n for n in allowed if "source_encoder" not in n} == {
        "backbone.encoder_embeddings.position.weight", "backbone.encoder.layers.0.attention.sublayer.qkv.weight",
        "backbone.encoder.layers.0.attention.sublayer.qkv.bias"}
    stages.on_epoch(1)  # stage 2: everything trains
    assert all(p.requires_grad for p in translation.parameters())


def test_two_stage_translation_run_saves_and_reloads(bart, source_tokenizer_dir, tmp_path):
    out = tmp_path / "mt"
    summary = run_finetune(settings(bart, out, epochs=2, new_source_encoder=1,
                                    source_tokenizer=str(source_tokenizer_dir), stage1_epochs=1, metric="bleu"))
    assert "bleu" in summary and summary["metric"] == "bleu"
    assert (out / "model" / "source_encoder" / "vocab.txt").is_file()
    again = evaluate_model(out / "model", None, COPY[1], options=TaskOptions(metric="bleu", num_beams=2,
                                                                             max_target_length=16), device="cpu")
    assert again["bleu"] == pytest.approx(summary["bleu"])
    with pytest.raises(UserError, match="go together"):
        settings(bart, tmp_path / "x", new_source_encoder=1).validate()
    with pytest.raises(UserError, match="leaves no epoch of stage 2"):
        settings(bart, tmp_path / "x", new_source_encoder=1, source_tokenizer="d", stage1_epochs=5).validate()


def test_seq2seq_recipes_hold_the_papers_settings():
    from lmforge.recipes import build_dataclass, read_yaml

    recipes = DATA.parent / "recipes/finetune"
    mt = build_dataclass(FinetuneConfig, read_yaml(recipes / "bart-multi30k-de-en.yaml"))
    assert (mt.task, mt.metric, mt.label_smoothing) == ("seq2seq", "bleu", 0.1)
    assert mt.new_source_encoder > 0 and 0 < mt.stage1_epochs < mt.epochs  # both stages run
    summary = build_dataclass(FinetuneConfig, read_yaml(recipes / "bart-dialogsum.yaml"))
    assert (summary.source_column, summary.target_column, summary.metric) == ("dialogue", "summary", "rouge")
    t5 = build_dataclass(FinetuneConfig, read_yaml(recipes / "t5-sst2.yaml"))
    assert (t5.source_prefix, t5.label_words) == ("sst2 sentence: ", "negative,positive")


@fuzz_settings(max_examples=60, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                      st.lists(st.sampled_from([b'{"source": "a", "target": "b"}', b'{"source": 3}', b"[1]", b"{",
                                                b"a\tb", b"a\tb\tc", b"\t", b"", b"\xff", b'{"source": null}']),
                               max_size=8).map(b"\n".join)),
       name=st.sampled_from(["pairs.tsv", "pairs.jsonl", "pairs.tsv.gz"]))
def test_reader_any_bytes(tmp_path, data, name):
    """Any bytes give examples with both sides or a one-line UserError naming the file."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    try:
        examples = read_pairs(path)
    except UserError as error:
        assert "\n" not in str(error) and path.name in str(error)
        return
    assert examples and all(e.source.strip() and e.target.strip() for e in examples)


def test_cli_finetune_evaluate_predict(bart, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["finetune", "--model", str(bart), "--task", "seq2seq", "--train", str(COPY[0]), "--eval", str(COPY[1]),
                 "--out", str(out), "--epochs", "1", "--limit", "64", "--eval-limit", "8", "--batch-size", "16",
                 "--metric", "rouge", "--num-beams", "1", "--max-target-length", "16", "--label-smoothing", "0.1",
                 "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(metrics) and metrics["metric"] == "rougeL"
    assert metrics["settings"]["label_smoothing"] == 0.1
    saved = json.loads((out / "model" / "seq2seq_settings.json").read_text())
    assert saved == {"metric": "rouge", "max_target_length": 16, "num_beams": 1}
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(COPY[1]), "--limit", "8",
                 "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    assert f"rougeL: {metrics['rougeL']:.4f}" in capsys.readouterr().out  # the saved metric and beam settings
    inputs = tmp_path / "in.txt"
    inputs.write_text("a b\nc d e\n")
    assert main(["predict", "--model", str(out / "model"), "--input", str(inputs), "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
