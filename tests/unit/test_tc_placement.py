"""bpfman_tc.placement: the fewest TCX moves that give the daemon's links
their desired relative order, leaving other tools' links alone."""

from __future__ import annotations

import random

import pytest

from bpfman_tc.placement import Step, plan


def apply(chain: list[str], steps: list[Step]) -> list[str]:
    """Replay a plan on a model of the kernel chain."""
    chain = list(chain)
    for s in steps:
        if s.move:
            chain.remove(s.key)  # type: ignore[arg-type]
        else:
            assert s.key not in chain
        if s.where == "append":
            chain.append(s.key)  # type: ignore[arg-type]
        else:
            i = chain.index(s.neighbour)  # type: ignore[arg-type]
            chain.insert(i + (s.where == "after"), s.key)  # type: ignore[arg-type]
    return chain


def test_first_link_is_appended() -> None:
    assert plan(["a"], {}) == [Step("a", "append", None, False)]


def test_new_link_goes_before_the_first_that_runs_after_it() -> None:
    assert plan(["n", "a", "b"], {"a": 0, "b": 1}) == [Step("n", "before", "a", False)]
    assert plan(["a", "n", "b"], {"a": 0, "b": 1}) == [Step("n", "after", "a", False)]
    assert plan(["a", "b", "n"], {"a": 0, "b": 1}) == [Step("n", "after", "b", False)]


def test_in_order_needs_nothing() -> None:
    assert plan(["a", "b", "c"], {"a": 0, "b": 3, "c": 7}) == []


def test_reprioritized_link_moves_once() -> None:
    steps = plan(["a", "d", "b", "c"], {"a": 0, "b": 1, "c": 2, "d": 3})
    assert steps == [Step("d", "after", "a", True)]


def test_foreign_links_stay_put() -> None:
    chain = ["x", "b", "y", "a", "z"]
    steps = plan(["a", "b"], {"a": 3, "b": 1})
    assert len(steps) == 1
    result = apply(chain, steps)
    assert [k for k in result if k in "xyz"] == ["x", "y", "z"]
    assert [k for k in result if k in "ab"] == ["a", "b"]


@pytest.mark.parametrize("seed", range(30))
def test_random_plans_reach_the_desired_order(seed: int) -> None:
    rng = random.Random(seed)
    ours = [f"p{i}" for i in range(rng.randint(1, 9))]
    present = [k for k in ours if rng.random() < 0.7]
    foreign = [f"f{i}" for i in range(rng.randint(0, 3))]
    chain = present + foreign
    rng.shuffle(chain)
    desired = list(ours)
    rng.shuffle(desired)
    steps = plan(desired, {k: chain.index(k) for k in present})
    result = apply(chain, steps)
    assert [k for k in result if k in ours] == desired
    assert [k for k in result if k in foreign] == [k for k in chain if k in foreign]
    moved = [s for s in steps if s.move]
    # never more moves than links out of place
    assert len(moved) <= len(present)
