"""The shared INT8 budget search (``yolox_sdk.export.budget_search``) against a fake backend whose AP per
mix is known in closed form, so the mixes tried, the chosen one and the failure message are predictable.

The fake model's AP is the float AP minus the cost of every block left INT8 (additive costs), or zero when
any "fatal" block is INT8 (the case where restoring blocks one at a time from all-INT8 shows nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from yolox_sdk.errors import ExportError
from yolox_sdk.export.budget_search import Block, Budget, Trial, no_mix_message, search, search_report

FP32_AP = 40.0
FLOAT_FILE = Path("float.model")
BLOCKS = [
    Block("stem", 0.1),
    Block("dark2", 0.2),
    Block("dark3", 0.3),
    Block("Concat", 0.0, searchable=False),  # no convolutions: never tried on its own
    Block("head.output", 0.0),
]
COSTS = {"stem": 3.0, "dark2": 2.0, "dark3": 0.5, "Concat": 0.0, "head.output": 0.2}


class FakeBackend:
    """Candidates are paths naming their float blocks; ``evaluate`` computes the AP from them."""

    def __init__(self, costs: dict[str, float], fatal: Sequence[str] = ()) -> None:
        self.costs, self.fatal = costs, set(fatal)
        self.built: list[tuple[str, ...]] = []
        self.evaluated: list[Path] = []

    def candidate(self, float_blocks: Sequence[str]) -> Path:
        self.built.append(tuple(float_blocks))
        return Path("+".join(float_blocks) or "all-int8")

    def evaluate(self, path: Path) -> tuple[float, float]:
        self.evaluated.append(path)
        if path == FLOAT_FILE:
            return FP32_AP, 60.0
        kept = set() if path.name == "all-int8" else set(path.name.split("+"))
        int8 = set(self.costs) - kept
        if int8 & self.fatal:
            return 0.0, 0.0
        ap = FP32_AP - sum(self.costs[block] for block in int8)
        return ap, ap + 20


def budget(max_ap_drop: float = 1.0, max_float_fraction: float = 0.5) -> Budget:
    return Budget("fake-int8", max_ap_drop, max_float_fraction, "Fake", "Try something else.")


def test_a_loose_budget_stops_at_the_all_int8_model() -> None:
    backend = FakeBackend(COSTS)
    result = search(backend, FLOAT_FILE, BLOCKS, budget(max_ap_drop=6.0), val_images=3)

    assert result.chosen == Trial((), 34.3, 54.3) == result.all_int8
    assert result.fp32 == Trial(tuple(block.name for block in BLOCKS), FP32_AP, 60.0)
    assert backend.evaluated[0] == FLOAT_FILE and backend.built == [()]
    assert result.chosen_path == Path("all-int8") and result.sensitivity == {}


def test_the_most_sensitive_blocks_are_kept_float_until_the_drop_is_within_budget() -> None:
    backend = FakeBackend(COSTS)
    result = search(backend, FLOAT_FILE, BLOCKS, budget(max_ap_drop=1.0), val_images=3)

    # 34.3 all INT8; each searchable block alone INT8 costs its own cost; stem (3.0) then dark2 (2.0) float
    # leaves 0.7 lost (dark3 + head.output), within 1.0.
    assert result.chosen.float_blocks == ("stem", "dark2")
    assert result.chosen.ap == pytest.approx(39.3)
    assert result.sensitivity == pytest.approx({"stem": 3.0, "dark2": 2.0, "dark3": 0.5, "head.output": 0.2})
    everything = tuple(block.name for block in BLOCKS)
    only = [tuple(name for name in everything if name != block) for block in ("stem", "dark2", "dark3")]
    only.append(tuple(name for name in everything if name != "head.output"))
    assert backend.built == [(), *only, ("stem",), ("stem", "dark2")]
    assert len(result.trials) == 7 and result.chosen_path == Path("stem+dark2")
    report = search_report(result, budget(max_ap_drop=1.0))
    assert report["ap_drop"] == pytest.approx(0.7) and report["all_int8_ap"] == pytest.approx(34.3)
    assert report["float_blocks"] == ["stem", "dark2"]


def test_sensitivity_is_measured_one_block_int8_at_a_time() -> None:
    # With stem and dark2 each breaking the model, restoring either alone from all-INT8 gains nothing;
    # quantizing either alone shows a 40-point loss, and both are kept float.
    backend = FakeBackend({name: 0.0 for name in COSTS}, fatal=("stem", "dark2"))
    result = search(backend, FLOAT_FILE, BLOCKS, budget(max_ap_drop=1.0), val_images=3)

    assert result.sensitivity == {"stem": 40.0, "dark2": 40.0, "dark3": 0.0, "head.output": 0.0}
    assert result.chosen.float_blocks == ("stem", "dark2") and result.chosen.ap == FP32_AP


def test_no_mix_within_budget_fails_with_the_best_trade_off() -> None:
    # dark3 (30 % of the convolutions) alone exceeds the 25 % float limit; stem + dark2 (30 %) together do
    # too, so the search tries [stem] (37.3) then [stem, head.output] (37.5) and gives up.
    backend = FakeBackend(COSTS)
    with pytest.raises(ExportError) as error:
        search(backend, FLOAT_FILE, BLOCKS, budget(max_ap_drop=1.0, max_float_fraction=0.25), val_images=3)

    assert str(error.value) == (
        "fake-int8: no mix of INT8 and float layers loses at most max_ap_drop=1 AP50:95 points (float AP50:95 "
        "40.00). Best trade-off found: AP50:95 37.50 (drop 2.50) with ['stem', 'head.output'] kept float (10% "
        "of the convolutions; at most max_float_fraction=0.25 may be). Try something else."
    )
    assert ("dark3",) not in backend.built and backend.built[-2:] == [("stem",), ("stem", "head.output")]


def test_the_message_says_nothing_when_no_block_could_be_kept_float() -> None:
    message = no_mix_message(Trial(("stem",), 40.0, 60.0), Trial((), 10.0, 20.0), budget(0, 0), 0.0)
    assert "with nothing kept float (0% of the convolutions" in message and "max_ap_drop=0 " in message
