"""Pretraining from raw text: recipe -> tokenizer -> prepared shards -> MLM (+NSP/SOP) training.

BERT's recipe (Devlin et al. 2019; google-research/bert run_pretraining.py): masked-LM loss
over the chosen positions plus next-sentence-prediction loss, summed
(``lmforge.objectives.mlm.MaskedLMObjective``). The vocabulary head runs only on the chosen
positions (the reference gathers them too, with ``max_predictions_per_seq``), and with
``train.unpad`` the encoder sees real tokens only. ``objective.kind`` "mlm+sop" is ALBERT's
(sentence order through the same pair head, n-gram masking with ``masking_unit: ngram``) and
"mlm" RoBERTa's (FULL-SENTENCES blocks, fairseq's masking with ``masking_scheme: fairseq``);
see ``lmforge.objectives.dataset``.

GPT's recipe (Radford et al. 2018; ``objective.kind: clm``): next-token prediction over
contiguous blocks of end-of-text-joined documents, on a decoder
(``lmforge.objectives.clm``); held-out loss, accuracy and perplexity are logged.

BART's recipe (Lewis et al. 2020; ``objective.kind: denoising``) and T5's (Raffel et al. 2020;
``span_corruption``) train an encoder-decoder to reconstruct corrupted text, with teacher forcing
over the target tokens (``lmforge.objectives.denoising``, ``span_corruption``, ``seq2seq``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from lmforge.errors import UserError
from lmforge.objectives.mlm import MaskedLMObjective
from lmforge.recipes import apply_overrides, build_dataclass, read_yaml
from lmforge.training.loop import TrainConfig, Trainer


@dataclass
class ModelSection:
    preset: str = "bert-mini"  # a name from `lmforge presets`
    config: dict = field(default_factory=dict)  # ModelConfig fields to override (e.g. hidden_dropout)
    init_from: str = ""  # start from this checkpoint instead of random weights


@dataclass
class DataSection:
    corpus: list[str] = field(default_factory=list)  # .txt/.jsonl(.gz/.xz) files of raw text
    prepared: str = ""  # an existing `lmforge prepare` directory (then corpus is not read)
    tokenizer: str = ""  # tokenizer directory; empty: train one of tokenizer_kind on the corpus
    # kind trained when tokenizer is empty: wordpiece, byte_bpe (RoBERTa), unigram (ALBERT), gpt2_byte_bpe (GPT-2)...
    tokenizer_kind: str = "wordpiece"
    vocab_size: int = 30522  # for a trained tokenizer
    lowercase: bool = True
    heldout_fraction: float = 0.01
    heldout_docs: int = 0  # exact held-out document count (overrides the fraction)


@dataclass
class ObjectiveSection:
    # BERT: MLM + NSP; ALBERT: MLM + sentence-order prediction; RoBERTa: MLM on packed text;
    # GPT: causal LM on contiguous blocks; BART: denoising; T5: span corruption (encoder-decoders);
    # ELMo: forward + backward LMs (lmforge.lstm.elmo_training)
    kind: Literal["mlm+nsp", "mlm+sop", "mlm", "clm", "denoising", "span_corruption", "bilm"] = "mlm+nsp"
    # clm: the block length (GPT 512, GPT-2 1024); denoising: block with <s> </s> (fairseq
    # tokens_per_sample); span_corruption: the inputs length (T5 512: raw segments of 568)
    max_seq_length: int = 128
    document_attention: bool = False  # clm: attention and positions stay inside each document (needs train.unpad)
    masking: Literal["dynamic", "static"] = "dynamic"
    dupe_factor: int = 10  # static masks / NSP pairings: distinct rounds (create_pretraining_data)
    # what one masking draw takes: a token, a whole word, or an n-gram of whole words (ALBERT)
    masking_unit: Literal["token", "whole_word", "ngram"] = "token"
    max_ngram: int = 3  # ngram unit: n <= max_ngram, p proportional to 1/n
    # how positions are chosen: BERT's (round(p * len) capped at max_predictions, specials never)
    # or fairseq's for RoBERTa (floor(p * len + U[0,1)) over every position, no cap)
    masking_scheme: Literal["bert", "fairseq"] = "bert"
    # mlm+sop, a one-sentence chunk: random_next = the reference's random-document B labelled 1;
    # skip = leave it out (pure order prediction)
    sop_single_sentence: Literal["random_next", "skip"] = "random_next"
    whole_word: bool = False  # older spelling of masking_unit: whole_word
    mlm_probability: float = 0.15  # training mask rate (BERT 0.15; Cramming 0.25, MosaicBERT 0.30)
    # held-out masks are drawn at this rate whatever the training rate, so held-out figures
    # of recipes with different mask rates compare
    eval_mlm_probability: float = 0.15
    max_predictions: int = 20  # per sequence (BERT: 20 at 128 tokens, 80 at 512)
    # MLM kinds: a sequence-length curriculum, short first: [[LENGTH, UNTIL], ...] trains on
    # LENGTH-token sequences until progress UNTIL (a share of max_steps or of the time budget),
    # then on max_seq_length, e.g. [[64, 0.5]]
    seq_length_curriculum: list[list[float]] = field(default_factory=list)
    short_seq_prob: float = 0.1
    # denoising: a named noise (lmforge.objectives.denoising.NOISE_PRESETS) and fairseq-named
    # overrides of it, e.g. {mask: 0.3, poisson_lambda: 3.0, rotate: 0.5}
    noise_preset: str = "bart-large"
    noise: dict = field(default_factory=dict)
    # span_corruption: T5's noise; noise_mask iid (the paper's baseline) or prefix_lm (density 0.5)
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    noise_mask: Literal["random_spans", "iid", "prefix_lm"] = "random_spans"


ENCODER_DECODER_OBJECTIVES = ("denoising", "span_corruption")


@dataclass
class PretrainRecipe:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    export_hf: bool = True  # also write OUT/model-hf for transformers


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> PretrainRecipe:
    return build_dataclass(PretrainRecipe, apply_overrides(read_yaml(path), overrides or []))


def validate_recipe(recipe: "PretrainRecipe") -> None:
    """Values the run would otherwise trip over late (or, worse, accept: max_steps -5 would
    save an untrained model), checked before any tokenizer training or data preparation."""
    t, o, d = recipe.train, recipe.objective, recipe.data
    at_least = {"train.max_steps": (t.max_steps, 0), "train.batch_size": (t.batch_size, 1),
                "train.log_every": (t.log_every, 1), "train.eval_batches": (t.eval_batches, 1),
                "train.micro_batch_size": (t.micro_batch_size, 0), "train.warmup_steps": (t.warmup_steps, 0),
                "train.eval_every": (t.eval_every, 0), "train.save_every": (t.save_every, 0),
                "train.keep_checkpoints": (t.keep_checkpoints, 0), "objective.max_seq_length": (o.max_seq_length, 8),
                "objective.max_predictions": (o.max_predictions, 1), "objective.dupe_factor": (o.dupe_factor, 1),
                "objective.max_ngram": (o.max_ngram, 1),
                "data.vocab_size": (d.vocab_size, 1), "data.heldout_docs": (d.heldout_docs, 0)}
    for key, (value, low) in at_least.items():
        if value < low:
            raise UserError(f"{key} must be at least {low}, got {value}")
    if not t.lr > 0:
        raise UserError(f"train.lr must be positive, got {t.lr}")
    from lmforge.training.loop import check_run_length

    check_run_length(t)
    if not t.adam_eps > 0 or not (0 <= t.adam_beta1 < 1 and 0 <= t.adam_beta2 < 1):
        raise UserError("train.adam_eps must be positive and train.adam_beta1/2 in [0, 1)")
    if t.weight_decay < 0 or t.clip_norm < 0:
        raise UserError("train.weight_decay and train.clip_norm must be >= 0")
    if not 0 < o.mlm_probability <= 1 or not 0 < o.eval_mlm_probability <= 1 or not 0 <= o.short_seq_prob <= 1:
        raise UserError("objective.mlm_probability and eval_mlm_probability must be in (0, 1] "
                        "and objective.short_seq_prob in [0, 1]")
    curriculum_stages(o)  # its errors, early
    if o.masking_unit == "ngram" and o.masking_scheme == "fairseq":
        raise UserError("objective.masking_unit ngram follows ALBERT's selection: use objective.masking_scheme bert")
    if o.kind == "clm" and o.document_attention and not t.unpad:
        raise UserError("objective.document_attention needs train.unpad: true (the unpadded layout)")
    if not d.tokenizer and not d.prepared:
        from lmforge.tokenization import KINDS

        if d.tokenizer_kind not in KINDS:
            raise UserError(f"data.tokenizer_kind must be one of {', '.join(KINDS)}, got {d.tokenizer_kind!r}")
    if not 0 <= d.heldout_fraction < 1:
        raise UserError(f"data.heldout_fraction must be in [0, 1), got {d.heldout_fraction}")
    if d.prepared:
        if not (Path(d.prepared) / "manifest.json").is_file():
            raise UserError(f"data.prepared: {d.prepared} is not a prepared data directory (run `lmforge prepare`)")
    else:
        from lmforge.corpus import check_corpus_files

        if not d.corpus:
            raise UserError("the recipe needs data.corpus (raw text files) or data.prepared")
        check_corpus_files(d.corpus)
        if d.tokenizer and not Path(d.tokenizer).is_dir():
            raise UserError(f"data.tokenizer: no such directory {d.tokenizer}")
    if o.kind == "denoising":
        from lmforge.objectives.denoising import noise_preset

        noise_preset(o.noise_preset, **o.noise)
    if o.kind == "span_corruption" and not (0 < o.noise_density < 1 and o.mean_noise_span_length >= 1):
        raise UserError("objective.noise_density must be in (0, 1) and objective.mean_noise_span_length >= 1")
    if o.kind == "bilm" and not recipe.model.init_from:  # ELMo's presets (a wrong name fails before any data work)
        from lmforge.lstm.elmo_config import get_elmo_preset

        get_elmo_preset(recipe.model.preset)
    if not recipe.model.init_from and o.kind != "bilm":
        from lmforge.families import get_preset

        try:
            preset = get_preset(recipe.model.preset).replace(**recipe.model.config)
        except TypeError as error:
            raise UserError(f"model.config: {error}") from None
        if (o.kind in ENCODER_DECODER_OBJECTIVES) != (preset.architecture == "encoder_decoder"):
            raise UserError(f"objective.kind {o.kind} does not train a model of architecture {preset.architecture} "
                            f"(model.preset {recipe.model.preset})")
        if o.max_seq_length > preset.max_positions:
            raise UserError(f"objective.max_seq_length {o.max_seq_length} exceeds the model's "
                            f"{preset.max_positions} positions")


def curriculum_stages(objective: ObjectiveSection) -> list[tuple[int, float]]:
    """The sequence-length curriculum as (length, until) pairs, checked: lengths rising and
    below max_seq_length, untils rising in (0, 1)."""
    from lmforge.objectives.dataset import OBJECTIVE_KINDS  # the masked-LM kinds

    stages = []
    for item in objective.seq_length_curriculum:
        if len(item) != 2 or int(item[0]) != item[0]:
            raise UserError(f"objective.seq_length_curriculum: each stage is [LENGTH, UNTIL], got {item}")
        stages.append((int(item[0]), float(item[1])))
    if stages and objective.kind not in OBJECTIVE_KINDS:
        raise UserError(f"objective.seq_length_curriculum applies to the masked-LM kinds, not {objective.kind}")
    lengths, untils = [length for length, _ in stages], [until for _, until in stages]
    if stages and not (8 <= lengths[0] and lengths == sorted(set(lengths)) and lengths[-1] < objective.max_seq_length
                       and 0 < untils[0] and untils == sorted(set(untils)) and untils[-1] < 1):
        raise UserError("objective.seq_length_curriculum: lengths must rise from at least 8 to below "
                        f"max_seq_length {objective.max_seq_length}, and UNTIL rise within (0, 1)")
    return stages


def masked_lm_datasets(recipe: PretrainRecipe, data_dir: str | Path):
    """The training and held-out sets of the masked-LM kinds: (train, heldout). Held-out
    masks use ``objective.eval_mlm_probability``; with a sequence-length curriculum the
    training set is a ``Curriculum`` of one set per length."""
    from lmforge.objectives.dataset import PretrainingDataset
    from lmforge.training.curriculum import Curriculum

    obj = recipe.objective
    args = dict(max_seq_length=obj.max_seq_length, objective=obj.kind, masking=obj.masking,
                dupe_factor=obj.dupe_factor, mlm_probability=obj.mlm_probability,
                max_predictions=obj.max_predictions, short_seq_prob=obj.short_seq_prob, seed=recipe.train.seed,
                masking_unit=masking_unit(obj), max_ngram=obj.max_ngram, masking_scheme=obj.masking_scheme,
                sop_single_sentence=obj.sop_single_sentence)
    train = PretrainingDataset(data_dir, "train", **args)
    stages = curriculum_stages(obj)
    if stages:
        # max_predictions scales with the length, so the mask rate stays the recipe's
        shorter = [(until, PretrainingDataset(data_dir, "train", **{
            **args, "max_seq_length": length,
            "max_predictions": max(1, obj.max_predictions * length // obj.max_seq_length)}))
            for length, until in stages]
        train = Curriculum(shorter + [(1.0, train)])
    heldout = PretrainingDataset(data_dir, "heldout", **{**args, "mlm_probability": obj.eval_mlm_probability})
    return train, heldout


def _mask_cap_note(objective: ObjectiveSection) -> str:
    """A note when max_predictions keeps the mask rate below mlm_probability (BERT's scheme)."""
    from lmforge.objectives.mlm import num_to_predict

    wanted = num_to_predict(objective.max_seq_length, objective.mlm_probability, None)
    if objective.masking_scheme != "bert" or wanted <= objective.max_predictions:
        return ""
    return (f"note: objective.max_predictions {objective.max_predictions} caps masking at "
            f"{objective.max_predictions / objective.max_seq_length:.1%} of {objective.max_seq_length} tokens "
            f"(mlm_probability {objective.mlm_probability} asks {wanted}); raise it to mask at that rate")


def masking_unit(objective: ObjectiveSection) -> str:
    """The recipe's masking unit, with ``whole_word: true`` (older recipes) meaning whole words."""
    return "whole_word" if objective.whole_word and objective.masking_unit == "token" else objective.masking_unit


def _prepare_data(recipe: PretrainRecipe, out: Path, is_main: bool) -> Path:
    """The prepared data directory: given, or built under OUT/data (tokenizer trained if needed)."""
    data = recipe.data
    if data.prepared:
        if not Path(data.prepared).is_dir():
            raise UserError(f"data.prepared: no such directory {data.prepared}")
        return Path(data.prepared)
    if not data.corpus:
        raise UserError("the recipe needs data.corpus (raw text files) or data.prepared")
    for path in data.corpus:
        if not Path(path).is_file():
            raise UserError(f"data.corpus: no such file {path}")
    prepared = out / "data"
    from lmforge.training.rundir import check_data_source, data_source, record_data_source

    source = data_source(data.corpus, data.tokenizer, data.vocab_size, data.lowercase, data.heldout_fraction,
                         data.heldout_docs, recipe.train.seed, kind=data.tokenizer_kind)
    if check_data_source(out, source, resuming=(out / "checkpoints").exists()):
        return prepared  # resumed run: same data (stale data of a failed attempt is removed instead)
    if is_main:
        from lmforge.data.prepare import prepare_corpus
        from lmforge.tokenization import Tokenizer

        tokenizer_dir = data.tokenizer
        if not tokenizer_dir:
            tokenizer_dir = str(out / "tokenizer")
            print(f"training a {data.tokenizer_kind} tokenizer (vocab {data.vocab_size}) on {len(data.corpus)} file(s)")
            Tokenizer.train(data.corpus, kind=data.tokenizer_kind, vocab_size=data.vocab_size,
                            lowercase=data.lowercase).save(tokenizer_dir)
        roles = {"clm": ("eos",), "denoising": ("bos", "eos", "mask", "pad"),
                 "span_corruption": ("eos", "pad")}.get(recipe.objective.kind, ("cls", "sep", "mask", "pad"))
        prepare_corpus(data.corpus, tokenizer_dir, prepared, heldout_fraction=data.heldout_fraction,
                       heldout_docs=data.heldout_docs or None, seed=recipe.train.seed, required_roles=roles)
        record_data_source(out, source)
    return prepared


def open_run(recipe: PretrainRecipe, out: str | Path, resume: bool):
    """What every pretraining run starts with, whatever the model: refuse to overwrite a run,
    set up the processes, record the recipe, prepare (or reuse) the data. -> (out, distributed
    context, prepared data directory, its tokenizer)."""
    from lmforge.tokenization import Tokenizer
    from lmforge.training import distributed

    out = Path(out)
    if not resume and (out / "checkpoints").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    ctx = distributed.setup(recipe.train.device)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    data_dir = _prepare_data(recipe, out, ctx.is_main) if ctx.is_main else out / "data"
    ctx.barrier()
    data_dir = Path(recipe.data.prepared) if recipe.data.prepared else data_dir
    return out, ctx, data_dir, Tokenizer.from_dir(data_dir / "tokenizer")


def run_pretraining(recipe: PretrainRecipe, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train per ``recipe`` into ``out``: metrics.jsonl, checkpoints/, model/, model-hf/,
    curves.png, summary.json. Under torchrun every rank calls this."""
    from lmforge.api import build, load_model, save
    from lmforge.families import get_preset
    from lmforge.training import distributed
    from lmforge.training.report import plot_curves, summarize

    validate_recipe(recipe)  # also when called from Python, not only from the CLI
    out, ctx, data_dir, tokenizer = open_run(recipe, out, resume)
    if recipe.objective.kind == "bilm":  # ELMo lives outside the transformer core
        from lmforge.lstm.elmo_training import run_bilm_pretraining

        return run_bilm_pretraining(recipe, out, ctx, data_dir, tokenizer, resume)
    obj = recipe.objective
    if obj.kind == "clm":
        from lmforge.objectives.clm import causal_lm_data

        train_data, eval_data, objective = causal_lm_data(data_dir, tokenizer, obj.max_seq_length,
                                                          obj.document_attention)
    elif obj.kind in ENCODER_DECODER_OBJECTIVES:
        from lmforge.objectives.seq2seq import encoder_decoder_data

        train_data, eval_data, objective = encoder_decoder_data(obj.kind, data_dir, tokenizer, obj, recipe.train.seed)
    else:
        train_data, eval_data = masked_lm_datasets(recipe, data_dir)
        note = _mask_cap_note(obj)
        if ctx.is_main and note:
            print(note)
        objective = MaskedLMObjective(tokenizer.pad_id, "sop" if obj.kind == "mlm+sop" else "nsp")
    # NSP and SOP share the pair head
    task = {"mlm+nsp": "pretraining", "mlm+sop": "pretraining", "mlm": "masked_lm", "clm": "causal_lm",
            "denoising": "seq2seq_lm", "span_corruption": "seq2seq_lm"}[obj.kind]
    torch.manual_seed(recipe.train.seed)
    if recipe.model.init_from:
        model = load_model(recipe.model.init_from, task=task)
    else:
        config = get_preset(recipe.model.preset).replace(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id)
        if config.architecture in ("decoder", "encoder_decoder"):
            # A preset's end/start-of-text ids name its own vocabulary (or none, gpt2-tiny); the
            # model is trained on this tokenizer's, and `generate` stops at its eos.
            config = config.replace(eos_token_id=tokenizer.eos_id, bos_token_id=tokenizer.bos_id)
        if config.architecture == "encoder_decoder":
            config = config.replace(decoder_start_token_id=objective.decoder_start_id)
        if obj.max_seq_length > config.max_positions:
            raise UserError(f"objective.max_seq_length {obj.max_seq_length} exceeds the model's {config.max_positions} positions")
        try:
            config = config.replace(**recipe.model.config)
        except TypeError as error:
            raise UserError(f"model.config: {error}") from None
        model = build(config, task=task, seed=recipe.train.seed)
    if ctx.is_main:
        params = sum(p.numel() for p in model.parameters())
        print(f"model {recipe.model.preset}: {params:,} parameters; {len(train_data):,} training sequences "
              f"of up to {obj.max_seq_length} tokens; {ctx.world_size} process(es) on {ctx.device}")
    # Dropout is seeded per rank and step by the Trainer; the data order by train.seed alone.
    trainer = Trainer(model, objective, train_data, recipe.train, out, ctx,
                      eval_data=eval_data)
    result = trainer.fit(resume=resume)
    if ctx.is_main:
        save(model, out / "model", tokenizer)
        if recipe.export_hf:
            save(model, out / "model-hf", tokenizer, format="hf")
        plot_curves(out / "metrics.jsonl", out / "curves.png", title=f"{recipe.model.preset} pretraining",
                    by_time=recipe.train.time_budget_minutes > 0)
        result["summary"] = summarize(out / "metrics.jsonl", out / "summary.json", seconds=result["seconds"])
    distributed.teardown()
    return result
