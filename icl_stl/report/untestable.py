"""Predictions that the version-2 rules state *not testable* on this project's 2-core CPU,
each with its pilot's reason (docs/THEORY.md, sections 8.4-8.6 and 8.8).

A confirmatory programme does not run them at a size that cannot decide them: its
verdicts.json gives each the verdict "not testable" with the reason below and the pilot it
rests on. Their rules stay built (`rules=v2` judges a run that has the data, labelled
`rules_version: "v2-provisional"`), so that a larger budget (a GPU) can take them up after its
own pilot fixes their numbers. The numbers quoted here are tied to the pilots' committed JSON by
tests/system/test_documented_results.py.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_TESTABLE = "not testable"


@dataclass(frozen=True)
class Untestable:
    prediction: str
    reason: str
    pilot: str  # the committed pilot folder the reason rests on

    def to_json(self) -> dict:
        return {"verdict": NOT_TESTABLE, "statement": f"{self.prediction} is not testable on "
                "this CPU budget: " + self.reason, "why": self.reason, "pilot": self.pilot}


NOT_TESTABLE_ON_CPU: dict[str, Untestable] = {
    "3": Untestable(
        "P3",
        "the pilot's noise of one seed's dose slope is 0.62 of the slope (one-sided 90% upper "
        "bound 1.91), so the rule needs 10 seeds for 80% power (80 at the upper bound), at about "
        "2 CPU-hours each; the pilot could measure generation 0 only",
        "docs/results/pilot-p3-v2"),
    "4": Untestable(
        "P4",
        "within the pilot's cap of 4,000 steps only 4 n over 0.97 decades (2,150 to 20,000) "
        "close half of the zero-to-ridge gap at their stopping point; the smaller n memorise "
        "their S_0, and the rule needs at least 6 n over 2 decades",
        "docs/results/pilot-p4-v2"),
    "5": Untestable(
        "P5",
        "in the pilot both arms' error falls and flattens in m / n (the high end of the grid lies "
        "below the interior's mean in both seeds, by 0.59 and 0.89 in log excess risk), so there "
        "is no interior optimum to size; at the rule's 6,000 steps per n prompts its 20 seeds "
        "would take about 7.7 hours of this CPU for an effect the pilot does not show",
        "docs/results/pilot-p5-v2"),
    "10": Untestable(
        "P10",
        "in the pilot the fresh loops show no dip: their error is lowest at w = 1, whose end lies "
        "below the interior's mean by 0.55 and 0.16 in log excess risk (seeds 9601 and 9602), "
        "with a mean curvature of -1.68; the transformer's own labels cost more than the "
        "synthetic part saves (0.37-0.68 above the oracle twin at w <= 0.75), so there is no "
        "interior optimum for the rule to size",
        "docs/results/pilot-p10"),
}
