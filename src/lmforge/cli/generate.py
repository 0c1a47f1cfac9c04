"""`lmforge generate` (text from a causal or sequence-to-sequence LM, streamed for one prompt)
and `lmforge perplexity` (sliding-window perplexity of a causal LM on a text file)."""

from __future__ import annotations

import argparse
import sys

from lmforge.cli.checks import check_device, check_input_file, load_checked, positive_int, reading
from lmforge.errors import UserError


def register(subparsers) -> None:
    g = subparsers.add_parser(
        "generate", help="continue prompts with a causal (GPT-2, LLaMA) or seq2seq (BART, T5) model",
        description="Generate text after each PROMPT (or each line of --input): greedy by default, beam search "
                    "with --num-beams, sampling with --do-sample; options and defaults as transformers' generate. "
                    "One prompt (one sequence, no beams) is streamed token by token; several print one block each. "
                    "A prompt longer than the model's positions minus --max-new-tokens keeps its last tokens "
                    "(truncated from the left) with a warning.")
    g.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompt text(s)")
    g.add_argument("--model", required=True, help="checkpoint directory (lmforge or HF) with an LM head")
    g.add_argument("--input", help="text file, one prompt per line (instead of PROMPT)")
    g.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate at most (default 50)")
    g.add_argument("--do-sample", action="store_true", help="sample instead of taking the most likely token")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, > 0 (default 1)")
    g.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens; 0: all (default 50)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1: off)")
    g.add_argument("--seed", type=int, help="random seed for sampling (same seed, same text)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL's penalty on seen tokens (1: off)")
    g.add_argument("--no-repeat-ngram-size", type=int, default=0, help="never repeat an n-gram of this size (0: off)")
    g.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (default 1: off)")
    g.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = sum log-probs / length ** this (default 1)")
    g.add_argument("--early-stopping", choices=["true", "false", "never"], default="false",
                   help="beam search stop rule, as transformers (default false)")
    g.add_argument("--num-return-sequences", type=int, default=1, help="sequences per prompt (beams or samples)")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end a sequence when its text contains TEXT (cut there; repeatable)")
    g.add_argument("--forced-eos-token-id", type=int,
                   help="force this token as the last of --max-new-tokens (transformers' forced_eos_token_id; "
                        "BART's config.json sets 2)")
    g.add_argument("--decoder-start-token-id", type=int,
                   help="seq2seq models: the decoder's first token (default: the model config's, BART 2 and T5 0)")
    g.add_argument("--batch-size", type=positive_int, default=8, help="prompts per batch (default 8)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.set_defaults(func=run_generate)

    p = subparsers.add_parser(
        "perplexity", help="sliding-window perplexity of a causal LM on a text file",
        description="Perplexity as transformers' guide 'Perplexity of fixed-length models' computes it: the "
                    "file's tokens are read in windows of --max-length tokens starting every --stride tokens, "
                    "and each window scores only the tokens the previous one did not.")
    p.add_argument("--model", required=True, help="checkpoint directory (lmforge or HF) of a causal LM")
    p.add_argument("--data", required=True, help="UTF-8 text file (e.g. WikiText raw test), read as one text")
    p.add_argument("--max-length", type=int, help="window length (default: the model's positions)")
    p.add_argument("--stride", type=int, help="tokens between window starts, <= --max-length (default: half of it)")
    p.add_argument("--guide-weighting", action="store_true",
                   help="weight windows as the guide's code does (its published numbers), not every token once")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run_perplexity)


def _load(args):
    import torch

    check_device(args.device)
    model, tokenizer = load_checked(args.model)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files (tokenizer.json or vocab.txt)")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else \
        ("cpu" if args.device == "auto" else args.device)
    return model.to(device).eval(), tokenizer


def _prompts(args) -> list[str]:
    if args.input and args.prompts:
        raise UserError("give prompts as arguments or with --input, not both")
    if not args.input:
        if not args.prompts:
            raise UserError("no prompt: give PROMPT text or --input FILE")
        return args.prompts
    path = check_input_file(args.input, "--input")
    with reading([path]):
        lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise UserError(f"--input {path} is empty")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise UserError(f"--input {path} line {number} is empty")
    return lines


class _Stream:
    """Print one sequence's text as its tokens arrive: only text that is final (no half-decoded
    byte sequence at the end, nothing that could still turn into a stop string)."""

    def __init__(self, tokenizer, stops: list[str]) -> None:
        self.tokenizer, self.stops = tokenizer, stops
        self.ids: list[int] = []
        self.printed = 0
        self.hold = max((len(s) for s in stops), default=1) - 1

    def text(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cuts = [text.find(stop) for stop in self.stops if stop in text]
        return text[: min(cuts)] if cuts else text

    def on_token(self, row: int, token: int) -> None:
        self.ids.append(token)
        text = self.text().rstrip("\ufffd")
        safe = len(text) - self.hold
        if safe > self.printed:
            sys.stdout.write(text[self.printed:safe])
            sys.stdout.flush()
            self.printed = safe

    def finish(self) -> None:
        sys.stdout.write(self.text()[self.printed:] + "\n")
        sys.stdout.flush()


def run_generate(args: argparse.Namespace) -> int:
    from lmforge.generation import generate
    from lmforge.generation.api import check_generative

    prompts = _prompts(args)
    options = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, seed=args.seed, repetition_penalty=args.repetition_penalty,
                   no_repeat_ngram_size=args.no_repeat_ngram_size, num_beams=args.num_beams,
                   length_penalty=args.length_penalty, num_return_sequences=args.num_return_sequences,
                   early_stopping={"true": True, "false": False}.get(args.early_stopping, "never"), stop=args.stop,
                   forced_eos_token_id=args.forced_eos_token_id, decoder_start_token_id=args.decoder_start_token_id)
    from lmforge.generation.settings import GenerationSettings

    # Settings are checked before the model loads, so a mistake costs no loading time.
    GenerationSettings(**{k: v for k, v in options.items() if k not in ("stop", "decoder_start_token_id")},
                       stop_strings=tuple(args.stop))
    model, tokenizer = _load(args)
    check_generative(model)
    if len(prompts) == 1 and args.num_beams == 1 and args.num_return_sequences == 1:
        stream = _Stream(tokenizer, args.stop)
        generate(model, tokenizer, prompts, on_token=stream.on_token, **options)
        stream.finish()
        return 0
    many = len(prompts) * args.num_return_sequences > 1
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start:start + args.batch_size]
        result = generate(model, tokenizer, batch, **options)
        for index, (text, prompt_index) in enumerate(zip(result.texts, result.prompt_index)):
            if many:
                sequence = index % args.num_return_sequences + 1
                suffix = f", sequence {sequence}" if args.num_return_sequences > 1 else ""
                print(f"=== prompt {start + prompt_index + 1}{suffix} ===")
            print(text, flush=True)
    return 0


def run_perplexity(args: argparse.Namespace) -> int:
    from lmforge.generation.sliding_perplexity import perplexity

    path = check_input_file(args.data, "--data")
    with reading([path]):
        text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise UserError(f"--data {path} holds no text")
    model, tokenizer = _load(args)
    if model.task != "causal_lm":
        raise UserError(f"perplexity needs a causal language model; {args.model} holds a {model.task} model")
    ids = tokenizer.encode(text, max_length=None)["input_ids"]
    result = perplexity(model, ids, max_length=args.max_length, stride=args.stride,
                        guide_weighting=args.guide_weighting)
    max_length = args.max_length or model.config.max_positions
    stride = args.stride or max(1, max_length // 2)
    print(f"perplexity {result.perplexity:.4f} (mean NLL {result.mean_nll:.4f} nats/token; {result.tokens:,} tokens, "
          f"{result.windows:,} windows of {max_length}, stride {stride})")
    return 0
