"""The P6 pilot's co-primary scales (used by scripts/pilot_p6_analysis.py and
pilot_p6_sizing.py): per filter, the seed-paired filter x labeller interaction of the head's
log z^2 (calibration) and of the training set's log covariance-trace ratio (spread), computed by
the report's own function (`report.p6_pairs.coprimary`) over the pairs `filter_groups` makes,
with their noise (sigma per generation, tau per seed) as for the excess-risk interaction.
"""

from __future__ import annotations

import json

import numpy as np

SCALES = ("calibration", "spread")


def _summary(values: np.ndarray | None, two_way) -> dict | None:
    if values is None or not values.size:
        return None
    sigma, tau = two_way(values)[:2] if min(values.shape) >= 2 else (None, None)
    return {"mean_by_generation": values.mean(0).tolist(),
            "per_seed": values.mean(1).tolist(), "mean": float(values.mean()),
            "sigma": sigma, "tau": tau}


def coprimary_block(evidence, cfg, arm_of_filter: dict, two_way) -> dict:
    """{arm: {"seeds_read", "generations", "calibration": {...}, "spread": {...}}, "noise":
    {scale: {"sigma", "tau"}} pooled over the filters (sqrt of the mean variance)}."""
    from icl_stl.report.p6_pairs import coprimary, filter_groups, seed_pairs

    groups, arms = filter_groups(evidence, cfg)
    out: dict = {}
    for key, pairs in sorted(groups.items(), key=str):
        name = json.loads(key[-1])["filter"]
        chosen = seed_pairs(pairs)
        calibration, spread = (coprimary(arms, chosen.both, chosen.partners, chosen.window)
                               if chosen.window else (None, None))
        out[arm_of_filter[name]] = {"seeds_read": [lp.seed for lp in chosen.both],
                                    "generations": chosen.window,
                                    "calibration": _summary(calibration, two_way),
                                    "spread": _summary(spread, two_way)}
    noise = {}
    for scale in SCALES:
        rows = [r[scale] for r in out.values() if r[scale] and r[scale]["sigma"] is not None]
        noise[scale] = ({"sigma": float(np.sqrt(np.mean([r["sigma"] ** 2 for r in rows]))),
                         "tau": float(np.sqrt(np.mean([r["tau"] ** 2 for r in rows])))}
                        if rows else {"sigma": None, "tau": None})
    return {"filters": out, "noise": noise}
