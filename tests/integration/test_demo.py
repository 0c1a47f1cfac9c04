"""The README's demo command runs end to end (shortened to a few steps here)."""

import json

import lmforge

from pathlib import Path

from lmforge.demo import main

REPO = Path(__file__).resolve().parents[2]

SAMPLE = str(REPO / "data" / "brown" / "brown-sample.jsonl")  # the full corpus takes longer; same code path


def test_demo_runs_and_fills_masks(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--steps", "3", "--corpus", SAMPLE, "--set", "train.eval_batches=1"]) == 0
    printed = capsys.readouterr().out
    assert "held-out masked-LM accuracy" in printed and "fill-mask" in printed
    guesses = [line for line in printed.splitlines() if line.startswith("    -> ")]
    assert len(guesses) == 6 and all(len(line.split()) == 6 for line in guesses)  # "->" and five guesses
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and "eval_mlm_accuracy" in summary["last_eval"]
    model, tokenizer = lmforge.load(out / "model")
    assert model.config.positions == "rotary" and tokenizer.mask_id is not None
    # Running it again replaces the earlier demo run rather than refusing.
    assert main(["--out", str(out), "--steps", "1", "--corpus", SAMPLE, "--set", "train.eval_batches=1"]) == 0


def test_demo_uses_the_budget_recipe():
    from lmforge.demo import RECIPE
    from lmforge.pretraining import load_recipe

    recipe = load_recipe(RECIPE)
    assert recipe.train.time_budget_minutes > 0 and recipe.objective.kind == "mlm"


def test_demo_refuses_a_foreign_directory(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_recipes_ship_with_the_package(tmp_path, monkeypatch):
    """The recipes are package data (found from any working directory, listed in pyproject's
    package-data), so an installed lmforge finds them, not only a source checkout."""
    import glob
    import tomllib
    from pathlib import Path

    import lmforge.bundled
    from lmforge.pretraining import load_recipe

    monkeypatch.chdir(tmp_path)
    assert load_recipe("bert-mini").model.preset == "bert-mini"
    assert load_recipe("recipes/pretrain/tiny.yaml").model.preset
    package = Path(lmforge.bundled.__file__).parent
    patterns = tomllib.loads((package.parents[2] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["lmforge.bundled"]
    shipped = {Path(p) for pattern in patterns for p in glob.glob(str(package / pattern))}
    assert shipped == set(package.glob("recipes/*/*.yaml")) and len(shipped) >= 10
    assert sorted(lmforge.bundled.recipe_names()) == sorted(
        f"{p.parent.name}/{p.stem}" for p in shipped)
