"""The recipe the submission file carries: no seed (SEED gives it), so every seed packs one file."""

from pgolf.config import to_dict
from pgolf.pack.config import PackConfig
from pgolf.pack.reproduce import DEFAULT_SEED, make_recipe, train_config
from pgolf.train.config import TrainConfig


def recipe(seed: int) -> dict:
    return make_recipe(to_dict(TrainConfig(seed=seed, iterations=7)), {"scheme": "int6"}, to_dict(PackConfig()),
                       {"mode": "sliding"})


def test_the_recipe_records_no_seed_and_seed_comes_from_the_environment():
    assert "seed" not in recipe(42)["train"] and recipe(42) == recipe(7)
    assert train_config(recipe(42), {}).seed == DEFAULT_SEED == 1337  # the challenge's default
    cfg = train_config(recipe(42), {"SEED": "42", "ITERATIONS": "3"})
    assert (cfg.seed, cfg.iterations) == (42, 3)
    old = {**recipe(42), "train": to_dict(TrainConfig(seed=5))}  # a file packed when the recipe held its seed
    assert train_config(old, {}).seed == 5
