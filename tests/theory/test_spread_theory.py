"""The covariance-fitting reference learner's kept spread under each filter (theory.spread):
closed forms against the learner run by Monte Carlo, and the numbers issue 30 quotes."""

import numpy as np
import pytest

from icl_stl.theory.spread import (
    RULES,
    best_of_k_factor,
    fixed_threshold_spread,
    simulate_spread,
    spread,
)


def test_quoted_numbers():
    fixed = spread("fixed_threshold", 2, 8)
    assert fixed[1] == pytest.approx(0.744, abs=5e-4)
    assert fixed[8] == pytest.approx(0.443, abs=5e-4)
    assert spread("relative_threshold", 2, 3)[1:] == pytest.approx(0.7442 ** np.arange(1, 4),
                                                                   rel=1e-3)
    assert spread("best_of_k", 2, 3, k=4)[1:] == pytest.approx(0.25 ** np.arange(1, 4), rel=1e-6)
    assert best_of_k_factor(1, 3) == pytest.approx(1.0, rel=1e-6)  # one labelling: no filter
    assert (spread("admitted", 3, 5) == 1).all()


def test_fixed_threshold_settles_not_vanishes():
    # the fixed threshold stops biting once few tasks fail it: slower than the relative one
    fixed, relative = spread("fixed_threshold", 2, 8), spread("relative_threshold", 2, 8)
    assert fixed[1] == pytest.approx(relative[1])  # the same cut in generation 1
    assert (np.diff(fixed) < 0).all() and (fixed[2:] > relative[2:]).all()
    assert fixed_threshold_spread(np.inf, 2, 3) == pytest.approx(np.ones(4))


@pytest.mark.parametrize("rule", RULES)
def test_closed_forms_match_monte_carlo(rule):
    generations = 8 if rule != "best_of_k" else 3
    seeds = 8
    closed = spread(rule, 2, generations)
    sim = simulate_spread(rule, 2, 10_000, generations, seeds=seeds, seed=1)
    mean = sim.mean(1)
    se = sim.std(1, ddof=1) / np.sqrt(seeds)
    # within 2% relative (the forms neglect the fitted covariance's anisotropy) or 4 SE
    assert np.all(np.abs(mean - closed) <= np.maximum(0.02 * closed, 4 * se)), (mean, closed)
    if rule != "admitted":  # a filter on the task is far from the admitted 1 (> 20 SE)
        assert np.all(1 - mean[1:] > 20 * se[1:] + 0.05)


def test_bad_rule():
    with pytest.raises(ValueError, match="rule must be one of"):
        spread("ranking", 2, 3)
    with pytest.raises(ValueError, match="rule must be one of"):
        simulate_spread("ranking", 2, 10, 1)
