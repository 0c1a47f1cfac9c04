"""ULMFiT's three stages (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
Classification", section 3) on an AWD-LSTM:

1. general-domain LM pretraining on a large corpus (the paper: WikiText-103);
2. target-task LM fine-tuning on the task's text without labels, with discriminative learning
   rates (each lower layer group's lr / 2.6) and slanted triangular learning rates
   (cut_frac 0.1, ratio 32) - section 3.2;
3. classifier fine-tuning: concat pooling and two linear blocks on the encoder, gradual
   unfreezing from the top (one more layer group per epoch), discriminative rates and STLR again
   - section 3.3.

The pieces are lmforge's toolbox (``lmforge.toolbox``: discriminative_param_groups,
GradualUnfreezer) and its one schedule module (``lmforge.training.schedules.slanted_triangular``).
Adam with beta1 0.7, beta2 0.99 (section 4, "Hyperparameters"); gradient norm clipped at 0.25
(Merity et al.'s awd-lstm-lm). Training windows are contiguous BPTT windows over a token stream
with the recurrent state carried between them (truncated BPTT); the paper's variable-length
BPTT is replaced by a fixed window. Texts are tokenized with a character-level BPE vocabulary
(lmforge's ``bpe`` kind) trained on the stage-1 corpus, so stage 2 and 3 words outside it still
get pieces; perplexities are per BPE token.

Each stage writes an LSTM checkpoint directory (``lmforge.lstm.checkpoint``) with the tokenizer.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.lstm.awd_lstm import MODEL_TYPE, AWDLSTMClassifier, AWDLSTMLanguageModel, State, detach_state
from lmforge.lstm.awd_lstm_config import preset
from lmforge.lstm.checkpoint import load_lstm, save_lstm
from lmforge.progress import progress
from lmforge.toolbox import GradualUnfreezer, discriminative_param_groups
from lmforge.training.schedules import slanted_triangular

STAGE_DIRS = ("stage1-language-model", "stage2-language-model", "stage3-classifier")
Log = Callable[[str], None]


@dataclass
class UlmfitConfig:
    """Every setting of ``lmforge ulmfit``; a recipe file holds the same keys (flat)."""

    general: list[str] = field(default_factory=list)  # stage 1 corpus files (.txt/.jsonl, optionally .xz/.gz)
    pretrained: str = ""  # a stage-1 (or any AWD-LSTM LM) checkpoint: skips stage 1
    task_text: list[str] = field(default_factory=list)  # stage 2 text; default: the training file's texts
    train: str = ""  # labelled training file (.tsv/.csv/.jsonl)
    dev: str = ""  # labelled held-out file
    out: str = ""
    preset: str = "awd-lstm-tiny"
    vocab_size: int = 0  # 0: the preset's
    general_tokens: int = 0  # stage 1 reads at most this many tokens of the corpus (0: all)
    lm_epochs: int = 1  # stage 1
    lm_lr: float = 3e-3
    finetune_epochs: int = 2  # stage 2
    finetune_lr: float = 1e-3
    classifier_epochs: int = 5  # stage 3: with gradual unfreezing, embedding + 3 layers + head = 5
    classifier_lr: float = 1e-2
    discriminative_decay: float = 2.6
    batch_size: int = 32  # language-model rows
    bptt: int = 70
    classifier_batch_size: int = 32
    max_length: int = 400  # tokens per text in stage 3
    limit: int = 0  # use the first N labelled training examples (0: all)
    text_column: str | None = None
    label_column: str | None = None
    weight_decay: float = 0.01
    clip: float = 0.25
    seed: int = 42
    device: str = "auto"  # a GPU when there is one

    def validate(self) -> None:
        if not self.general and not self.pretrained:
            raise UserError("give --general CORPUS (stage 1) or --pretrained DIR (a stage-1 checkpoint)")
        for key in ("train", "dev", "out"):
            if not getattr(self, key):
                raise UserError(f"missing --{key.replace('_', '-')}")
        for key in ("lm_epochs", "finetune_epochs", "classifier_epochs", "batch_size", "bptt",
                    "classifier_batch_size", "max_length"):
            if getattr(self, key) < (0 if key.endswith("epochs") else 1):
                raise UserError(f"{key} must be at least {0 if key.endswith('epochs') else 1}")
        if min(self.lm_lr, self.finetune_lr, self.classifier_lr, self.discriminative_decay) <= 0:
            raise UserError("learning rates and discriminative_decay must be positive")
        if min(self.general_tokens, self.limit, self.vocab_size, self.weight_decay, self.clip) < 0:
            raise UserError("general_tokens, limit, vocab_size, weight_decay and clip must be >= 0")


# ---------------------------------------------------------------------------------------
# Text -> token streams


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A lowercase character-level BPE vocabulary learned from ``texts`` (lmforge's ``bpe`` kind)."""
    from lmforge.tokenization import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_text("\n".join(text.replace("\n", " ") for text in texts) + "\n", encoding="utf-8")
        return Tokenizer.train([path], kind="bpe", vocab_size=vocab_size, lowercase=True, min_frequency=2,
                               show_progress=True)


def token_stream(tokenizer, texts: Iterable[str], chunk: int = 1000) -> torch.Tensor:
    """The texts' ids end to end, each text closed by the end-of-sequence token."""
    eos = tokenizer.eos_id
    ids: list[int] = []
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == chunk:
            ids.extend(_with_eos(tokenizer.encode_plain(batch), eos))
            batch = []
    if batch:
        ids.extend(_with_eos(tokenizer.encode_plain(batch), eos))
    return torch.tensor(ids, dtype=torch.long)


def _with_eos(rows: list[list[int]], eos: int) -> Iterable[int]:
    for row in rows:
        yield from row
        yield eos


def read_corpus(paths: Sequence[str], max_words: int = 0) -> list[str]:
    """The paragraphs (blank-line separated) of the corpus files' documents in order, stopping
    after about ``max_words`` words. Paragraphs rather than documents, so a corpus of a few long
    books still gives a held-out sample spread over the text."""
    from lmforge.corpus import check_corpus_files, iter_documents

    check_corpus_files(list(paths))
    paragraphs, words = [], 0
    for path in paths:
        for document in iter_documents(path):
            for paragraph in document.split("\n\n"):
                if not paragraph.strip():
                    continue
                paragraphs.append(paragraph)
                words += len(paragraph.split())
                if max_words and words >= max_words:
                    return paragraphs
    return paragraphs


def split_held_out(texts: Sequence[str], every: int) -> tuple[list[str], list[str]]:
    """(training, held-out): every ``every``-th text is held out for perplexity."""
    if len(texts) < 2:
        raise UserError("need at least two texts to hold one out for perplexity")
    every = min(every, len(texts))
    return ([t for i, t in enumerate(texts) if i % every != every - 1],
            [t for i, t in enumerate(texts) if i % every == every - 1])


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(rows, length): the stream cut into ``rows`` contiguous pieces, read in parallel."""
    rows = max(1, min(batch_size, len(stream) // 2))
    length = len(stream) // rows
    if length < 2:
        raise UserError(f"a stream of {len(stream)} tokens is too short for language-model training")
    return stream[: rows * length].view(rows, length)


def windows(batched: torch.Tensor, bptt: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, next-token targets) BPTT windows left to right; the last one may be shorter."""
    last = batched.shape[1] - 1  # the final token has no target
    return [(batched[:, start:start + min(bptt, last - start)], batched[:, start + 1:start + 1 + min(bptt, last - start)])
            for start in range(0, last, bptt)]


# ---------------------------------------------------------------------------------------
# Language-model stages (1 and 2)


def optimizer_for(model: nn.Module, lr: float, decay: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the model's layer groups, each lower group at lr / decay (decay 1: one lr)."""
    groups = discriminative_param_groups(model.layer_groups(), lr, decay=decay, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, betas=(0.7, 0.99))  # ULMFiT section 4


@torch.no_grad()
def perplexity(model: AWDLSTMLanguageModel, stream: torch.Tensor, batch_size: int, bptt: int) -> float:
    """exp(mean next-token cross-entropy) over a held-out stream, state carried across windows."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count, state = 0.0, 0, None
    for inputs, targets in windows(batchify(stream, batch_size), bptt):
        output = model(inputs.to(device), state)
        state = output.encoded.state
        _, cross_entropy = model.loss(output, targets.to(device))
        total += cross_entropy.item() * targets.numel()
        count += targets.numel()
    model.train(was_training)
    return math.exp(total / count)


def _update(model: nn.Module, loss: torch.Tensor, optimizer, schedule, clip: float) -> None:
    """One optimizer step of either stage: backward, optional norm clipping, step, schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    schedule.step()


def train_language_model(model: AWDLSTMLanguageModel, train: torch.Tensor, held_out: torch.Tensor, *,
                         epochs: int, lr: float, decay: float, batch_size: int, bptt: int, weight_decay: float,
                         clip: float, name: str, log: Log = print) -> list[dict]:
    """Stages 1 and 2: truncated-BPTT training under STLR; held-out perplexity before and after each epoch."""
    device = next(model.parameters()).device
    batched = batchify(train, batch_size)
    steps_per_epoch = len(windows(batched, bptt))
    optimizer = optimizer_for(model, lr, decay, weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, slanted_triangular(max(1, epochs * steps_per_epoch)))
    history = [{"stage": name, "epoch": 0, "held_out_perplexity": perplexity(model, held_out, batch_size, bptt)}]
    log(f"{name}: {len(train):,} training tokens, {len(held_out):,} held out; "
        f"held-out perplexity before training {history[0]['held_out_perplexity']:.1f}")
    for epoch in range(1, epochs + 1):
        model.train()
        state: State | None = None
        started, total_loss = time.perf_counter(), 0.0
        with progress(steps_per_epoch * batched.shape[0] * bptt, f"{name} epoch {epoch}", "tok") as bar:
            for inputs, targets in windows(batched, bptt):
                output = model(inputs.to(device), state)
                state = detach_state(output.encoded.state)
                loss, cross_entropy = model.loss(output, targets.to(device))
                _update(model, loss, optimizer, schedule, clip)
                total_loss += cross_entropy.item()
                bar.update(targets.numel())
        seconds = time.perf_counter() - started
        record = {"stage": name, "epoch": epoch, "train_loss": total_loss / max(1, steps_per_epoch),
                  "held_out_perplexity": perplexity(model, held_out, batch_size, bptt),
                  "tokens_per_second": steps_per_epoch * batched.shape[0] * bptt / seconds}
        history.append(record)
        log(f"{name} epoch {epoch}/{epochs}: train loss {record['train_loss']:.3f}, held-out perplexity "
            f"{record['held_out_perplexity']:.1f} ({record['tokens_per_second']:,.0f} tok/s)")
    return history


# ---------------------------------------------------------------------------------------
# Classifier stage (3)


def classifier_from_language_model(language_model: AWDLSTMLanguageModel, labels: Sequence[str]) -> AWDLSTMClassifier:
    """A new classifier whose encoder starts from the language model's (fastai's load_encoder)."""
    classifier = AWDLSTMClassifier(language_model.config.for_classifier(tuple(labels)))
    classifier.encoder.load_state_dict(language_model.encoder.state_dict())
    return classifier.to(next(language_model.parameters()).device)


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Ids of each text cut to ``max_length``; an empty text becomes one unknown token."""
    return [row[:max_length] or [tokenizer.unk_id] for row in tokenizer.encode_plain(list(texts))]


def pad_batch(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the lengths."""
    lengths = torch.tensor([len(row) for row in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row)
    return ids, lengths


@torch.no_grad()
def accuracy(model: AWDLSTMClassifier, rows: Sequence[list[int]], labels: Sequence[int], batch_size: int = 64) -> float:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(rows), batch_size):
        ids, lengths = pad_batch(rows[start:start + batch_size], model.config.pad_id)
        predicted = model(ids.to(device), lengths.to(device)).logits.argmax(-1).cpu()
        correct += int((predicted == torch.tensor(labels[start:start + batch_size])).sum())
    model.train(was_training)
    return correct / len(rows)


def train_classifier(model: AWDLSTMClassifier, train_rows: Sequence[list[int]], train_labels: Sequence[int],
                     dev_rows: Sequence[list[int]], dev_labels: Sequence[int], *, epochs: int, lr: float,
                     decay: float, batch_size: int, weight_decay: float, clip: float, seed: int,
                     gradual_unfreezing: bool = True, name: str = "stage 3", log: Log = print) -> list[dict]:
    """Stage 3: STLR over all steps, discriminative rates, and (by default) gradual unfreezing:
    epoch k trains the top k+1 layer groups. Dev accuracy after each epoch."""
    if len(train_rows) < 2:
        raise UserError("stage 3 needs at least two labelled training examples")
    device = next(model.parameters()).device
    batch_size = min(batch_size, len(train_rows))
    # BatchNorm cannot train on a batch of one: a last batch of one example is left out.
    steps_per_epoch = len(train_rows) // batch_size + (len(train_rows) % batch_size > 1)
    optimizer = optimizer_for(model, lr, decay, weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, slanted_triangular(max(1, epochs * steps_per_epoch)))
    unfreezer = GradualUnfreezer(model.layer_groups()) if gradual_unfreezing else None
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        if unfreezer is not None:
            unfreezer.on_epoch(epoch)
        model.train()
        order = torch.randperm(len(train_rows), generator=generator).tolist()
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        total_loss, started = 0.0, time.perf_counter()
        with progress(len(train_rows), f"{name} epoch {epoch + 1}", "ex") as bar:
            for batch in (b for b in batches if len(b) > 1):
                ids, lengths = pad_batch([train_rows[i] for i in batch], model.config.pad_id)
                labels = torch.tensor([train_labels[i] for i in batch], device=device)
                ids, lengths = ids.to(device), lengths.to(device)
                loss = model.loss(model(ids, lengths), labels, lengths)
                _update(model, loss, optimizer, schedule, clip)
                total_loss += loss.item()
                bar.update(len(batch))
        trainable = sum(any(p.requires_grad for p in group.parameters()) for group in model.layer_groups())
        record = {"stage": name, "epoch": epoch + 1, "train_loss": total_loss / steps_per_epoch,
                  "dev_accuracy": accuracy(model, dev_rows, dev_labels), "trainable_groups": trainable,
                  "examples_per_second": len(train_rows) / (time.perf_counter() - started)}
        history.append(record)
        log(f"{name} epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.3f}, dev accuracy "
            f"{record['dev_accuracy']:.4f} ({trainable} of {len(model.layer_groups())} layer groups trained, "
            f"{record['examples_per_second']:,.0f} ex/s)")
    return history


def read_labelled(path: str, text_column: str | None, label_column: str | None, limit: int = 0):
    """(texts, label strings) of a single-sentence classification file."""
    from lmforge.tasks.classification import read_classification

    examples = read_classification(path, text_column=text_column, label_column=label_column)
    if any(example.pair is not None for example in examples):
        raise UserError(f"{path}: ULMFiT here classifies single texts, not pairs")
    examples = examples[:limit] if limit else examples
    return [e.text for e in examples], [e.label for e in examples]


# ---------------------------------------------------------------------------------------
# The three stages in one run


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare(config: UlmfitConfig):
    """Validated settings, the device and the labelled data: (device, labels, train, dev) with
    train/dev as (texts, label ids)."""
    from lmforge.tasks import LabelMap

    config.validate()
    train_texts, train_names = read_labelled(config.train, config.text_column, config.label_column, config.limit)
    dev_texts, dev_names = read_labelled(config.dev, config.text_column, config.label_column)
    labels = LabelMap.from_labels(train_names)
    unseen = sorted(set(dev_names) - set(labels.labels))
    if unseen:
        raise UserError(f"dev label {unseen[0]!r} never occurs in {config.train}")
    return (resolve_device(config.device), labels, (train_texts, [labels.id_of(x) for x in train_names]),
            (dev_texts, [labels.id_of(x) for x in dev_names]))


def stage1_pretrain(config: UlmfitConfig, device: torch.device, log: Log = print):
    """(language model, tokenizer, history): trained on ``config.general``, or loaded from
    ``config.pretrained``."""
    from lmforge.tokenization import Tokenizer

    if config.pretrained:
        language_model = load_lstm(config.pretrained, "language_model").to(device)
        if not isinstance(language_model, AWDLSTMLanguageModel):
            raise UserError(f"--pretrained {config.pretrained} is not an AWD-LSTM language model")
        log(f"stage 1: using {config.pretrained}")
        return language_model, Tokenizer.from_dir(config.pretrained), []
    torch.manual_seed(config.seed)
    # Roughly 1.2 BPE tokens per word: read a little more than the token budget asks.
    paragraphs = read_corpus(config.general, max_words=int(config.general_tokens / 1.1) if config.general_tokens else 0)
    general_train, general_held_out = split_held_out(paragraphs, every=20)
    tokenizer = train_tokenizer(general_train, config.vocab_size or preset(config.preset).vocab_size)
    stream = token_stream(tokenizer, general_train)
    if config.general_tokens:
        stream = stream[: config.general_tokens]
    model_config = preset(config.preset, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
    language_model = AWDLSTMLanguageModel(model_config).to(device)
    history = train_language_model(language_model, stream, token_stream(tokenizer, general_held_out),
                                   epochs=config.lm_epochs, lr=config.lm_lr, decay=1.0, batch_size=config.batch_size,
                                   bptt=config.bptt, weight_decay=config.weight_decay, clip=config.clip,
                                   name="stage 1", log=log)
    return language_model, tokenizer, history


def stage2_finetune(language_model: AWDLSTMLanguageModel, tokenizer, texts: Sequence[str], config: UlmfitConfig,
                    log: Log = print) -> list[dict]:
    """The language model fine-tuned in place on the task's text: discriminative rates and STLR."""
    torch.manual_seed(config.seed)
    task_train, task_held_out = split_held_out(texts, every=10)
    return train_language_model(language_model, token_stream(tokenizer, task_train),
                                token_stream(tokenizer, task_held_out), epochs=config.finetune_epochs,
                                lr=config.finetune_lr, decay=config.discriminative_decay,
                                batch_size=config.batch_size, bptt=config.bptt, weight_decay=config.weight_decay,
                                clip=config.clip, name="stage 2", log=log)


def stage3_classifier(language_model: AWDLSTMLanguageModel | None, tokenizer, labels: Sequence[str], train, dev,
                      config: UlmfitConfig, log: Log = print, name: str = "stage 3"):
    """(classifier, history). The encoder starts from ``language_model`` and is unfrozen
    gradually; with ``language_model=None`` it starts from scratch (a preset-sized AWD-LSTM
    of the tokenizer's vocabulary) with every layer trained from the first epoch at one rate
    (discriminative rates protect what pretraining learned; a random encoder has nothing to protect)."""
    torch.manual_seed(config.seed)
    if language_model is not None:
        classifier = classifier_from_language_model(language_model, labels)
    else:
        base = preset(config.preset, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
        classifier = AWDLSTMClassifier(base.for_classifier(tuple(labels))).to(resolve_device(config.device))
    history = train_classifier(
        classifier, encode_texts(tokenizer, train[0], config.max_length), train[1],
        encode_texts(tokenizer, dev[0], config.max_length), dev[1], epochs=config.classifier_epochs,
        lr=config.classifier_lr, decay=config.discriminative_decay if language_model is not None else 1.0,
        batch_size=config.classifier_batch_size,
        weight_decay=config.weight_decay, clip=config.clip, seed=config.seed,
        gradual_unfreezing=language_model is not None, name=name, log=log)
    return classifier, history


def run_ulmfit(config: UlmfitConfig, log: Log = print) -> dict:
    """Stages 1-3 into ``config.out``: one checkpoint directory per stage and metrics.json."""
    from lmforge.training.rundir import check_out_dir

    device, labels, train, dev = prepare(config)
    out = check_out_dir(config.out, "--out")
    language_model, tokenizer, history = stage1_pretrain(config, device, log)
    if not config.pretrained:
        save_stage(language_model, tokenizer, out / STAGE_DIRS[0], log)
    task_texts = read_corpus(config.task_text) if config.task_text else list(train[0])
    history += stage2_finetune(language_model, tokenizer, task_texts, config, log)
    save_stage(language_model, tokenizer, out / STAGE_DIRS[1], log)
    classifier, classifier_history = stage3_classifier(language_model, tokenizer, labels.labels, train, dev, config, log)
    history += classifier_history
    save_stage(classifier, tokenizer, out / STAGE_DIRS[2], log)
    metrics = {"history": history, "dev_accuracy": history[-1]["dev_accuracy"] if config.classifier_epochs else None,
               "labels": labels.labels, "train_examples": len(train[0]), "dev_examples": len(dev[0])}
    (out / "ulmfit.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def save_stage(model: nn.Module, tokenizer, directory: Path, log: Log) -> None:
    save_lstm(model, model.config.to_dict(), MODEL_TYPE, model.task, directory, tokenizer)
    log(f"wrote {directory}")
