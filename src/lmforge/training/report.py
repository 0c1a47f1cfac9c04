"""After a run: a PNG of the training curves and a short JSON/console summary."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.training.loop import read_metrics


def plot_curves(metrics_path: str | Path, out_png: str | Path, title: str = "training",
                by_time: bool = False) -> Path | None:
    """Loss on the left; held-out metrics (eval_*) per evaluation on the right; against steps,
    or with ``by_time`` against training seconds (a run with a time budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x_key, x_label = ("train_seconds", "training seconds") if by_time else ("step", "step")
    loss_keys = sorted({k for r in records for k in r if k.endswith("loss") and not k.startswith("eval_")})
    for key in loss_keys:
        points = [(r.get(x_key, 0), r[key]) for r in records if key in r]
        left.plot(*zip(*points), label=key)
    left.set_xlabel(x_label)
    left.set_ylabel("loss")
    left.grid(alpha=0.3)
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    eval_keys = sorted({k for r in evals for k in r if k.startswith("eval_")})
    for key in eval_keys:
        points = [(r.get(x_key, 0), r[key]) for r in evals if key in r]
        style = "-o" if len(points) < 30 else "-"
        axis = left if key.endswith("loss") else right  # losses beside losses, scores on [0, 1]
        axis.plot(*zip(*points), style, label=key)
    right.set_xlabel(x_label)
    right.set_ylabel("held-out metric")
    right.set_ylim(bottom=0)
    if right.lines:
        right.legend()
    right.grid(alpha=0.3)
    left.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def summarize(metrics_path: str | Path, out_json: str | Path, seconds: float) -> dict:
    """First and last held-out metrics, final loss, throughput; printed and saved."""
    records = read_metrics(metrics_path)
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    summary = {"steps": records[-1]["step"] if records else 0, "seconds": round(seconds, 1),
               "final_loss": records[-1]["loss"] if records else None}
    if records and "train_seconds" in records[-1]:
        summary["train_seconds"] = round(records[-1]["train_seconds"], 1)
    if evals:
        summary["first_eval"] = {k: v for k, v in evals[0].items() if k.startswith("eval_") or k == "step"}
        summary["last_eval"] = {k: v for k, v in evals[-1].items() if k.startswith("eval_") or k == "step"}
    rates = [r["tokens_per_second"] for r in records if "tokens_per_second" in r]
    if rates:
        summary["median_tokens_per_second"] = sorted(rates)[len(rates) // 2]
    Path(out_json).write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"steps {summary['steps']} in {summary['seconds']} s, final training loss {summary['final_loss']:.4f}"]
    if evals:
        for key in sorted(summary["last_eval"]):
            if key != "step":
                first = summary["first_eval"].get(key)
                lines.append(f"{key}: {first:.4f} (step {summary['first_eval']['step']}) -> "
                             f"{summary['last_eval'][key]:.4f} (step {summary['last_eval']['step']})")
    print("\n".join(lines))
    return summary
