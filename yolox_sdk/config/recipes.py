"""Training recipes: named sets of defaults for the keys a user did not set (``training.recipe``).

YOLOX's defaults are written for 300 epochs from scratch on COCO (5 warm-up epochs, the last 15 without
mosaic). A finetune of 10-50 epochs from pretrained weights wants a different schedule, so
``training.recipe: auto`` (the default) picks ``finetune`` when ``training.epochs`` is at most
``FINETUNE_MAX_EPOCHS`` and ``yolox`` otherwise; ``finetune`` or ``yolox`` choose one outright.

A recipe only fills keys absent from the config file and the overrides, so anything a user writes wins,
and the run's saved ``config.yaml`` holds the values it chose (reloading it gives the same run). What the
``finetune`` recipe sets, and the experiments it was chosen from, are in ``benchmarks/README.md``
("Time to accuracy").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

RECIPES = ("auto", "finetune", "yolox")
FINETUNE_MAX_EPOCHS = 50
MAX_RECIPE_EPOCHS = 100_000  # schema.MAX_EPOCHS: beyond it structuring refuses the value anyway
DEFAULT_EPOCHS = 300  # TrainingConfig.epochs' default (schema imports this module's names, not the reverse)
BUDGET_MAX_EPOCHS = 50  # training.time_budget without training.epochs: the most epochs the budget may use


def chosen_recipe(data: Mapping[str, Any]) -> str:
    """The recipe ``data`` (a config as parsed YAML, overrides applied) trains with: ``finetune``,
    ``yolox``, or the unknown name as written (structuring then reports it with the choices)."""
    training = data.get("training")
    training = training if isinstance(training, Mapping) else {}
    name = training.get("recipe", "auto")
    if name != "auto":
        return str(name)
    epochs = training.get("epochs", DEFAULT_EPOCHS)
    if not _whole_number(epochs, MAX_RECIPE_EPOCHS):
        return "yolox"  # a bad epochs value: structuring names it; no recipe meanwhile
    return "finetune" if epochs <= FINETUNE_MAX_EPOCHS else "yolox"


def finetune_settings(epochs: int) -> dict[str, dict[str, Any]]:
    """The ``finetune`` recipe's values for a budget of ``epochs``, by section and key.

    One warm-up epoch (YOLOX's 5 would be half of a 10-epoch budget) and the last 20 % of the epochs
    without mosaic (YOLOX's 15 would be all of it). Freezing the backbone for the first 30 % was tried and
    dropped: those epochs ran twice as fast, but unfreezing at full learning rate knocked val mAP50:95
    from 32.5 to 2.2, and the run ended 1.4 points lower (``benchmarks/README.md``, "Time to accuracy").
    """
    return {"training": {"warmup_epochs": 1, "no_aug_epochs": max(1, round(epochs * 0.2))}}


def apply_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the chosen recipe's values added where the user set nothing.

    A ``time_budget`` without ``epochs`` sets ``epochs`` to ``BUDGET_MAX_EPOCHS`` first: the budget's run is
    a short finetune (its recipe applies), and the trainer lowers the epochs to what the budget allows.
    """
    training = data.get("training") if isinstance(data.get("training"), Mapping) else {}
    if training.get("time_budget") is not None and "epochs" not in training and isinstance(training, dict):
        training["epochs"] = BUDGET_MAX_EPOCHS
    epochs = training.get("epochs", DEFAULT_EPOCHS)
    if chosen_recipe(data) != "finetune" or not _whole_number(epochs, MAX_RECIPE_EPOCHS):
        return data  # a bad epochs value (0, huge, text) is left to structuring to report
    filled: list[str] = []
    for section, values in finetune_settings(int(epochs)).items():
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            continue  # a section that is not a mapping: structuring reports it
        for key, value in values.items():
            if key not in target:
                target[key] = value
                filled.append(f"{section}.{key}={value}")
    if filled:  # DEBUG: ``config show`` prints YAML on stdout; the trainer's INFO line is ``recipe_summary``
        log.debug("training.recipe finetune filled %s", ", ".join(filled))
    return data


def _whole_number(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def recipe_summary(config: Any) -> str | None:
    """One line for the start of training naming the finetune recipe's values in ``config`` (a loaded
    ``Config``), or ``None`` when it trains with YOLOX's own defaults."""
    training = config.training
    auto = training.recipe == "auto" and training.epochs <= FINETUNE_MAX_EPOCHS
    if training.recipe != "finetune" and not auto:
        return None
    why = f"{training.epochs} epochs <= {FINETUNE_MAX_EPOCHS}" if auto else "asked for"
    return (
        f"training.recipe finetune ({why}): warm-up {training.warmup_epochs:g} epochs, the last "
        f"{training.no_aug_epochs} without mosaic; keys set in the config win over the recipe, and "
        "training.recipe: yolox keeps YOLOX's own defaults."
    )
