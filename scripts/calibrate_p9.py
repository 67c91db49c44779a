"""Calibrate P9's rule by simulation (icl_stl/report/simulate_p9.py) and write
docs/results/p9-calibration/calibration.json; --check exits 1 if the committed file is stale.

    .venv/bin/python scripts/calibrate_p9.py            # writes calibration.json
    .venv/bin/python scripts/calibrate_p9.py --check    # exit 1 if it is stale

No loop runs: the noise is the version-2 pilot's (docs/results/pilot-v2/sizing.json) until P9's
own pilot measures it. Rows at the rule's seed count (`ReportConfig.v2_p9_seeds`) and at
horizon `v2_p9_horizon` (and at the pilot's horizon, 8), 20,000 draws each, and the power of the
bounded truth by horizon and seed count (5,000 draws each).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icl_stl.report.predictions.p9_accumulation import p9_window
from icl_stl.report.rules import ReportConfig
from icl_stl.report.simulate_p9 import calibration, p9_rates, reference_drift
from icl_stl.report.simulate_v2 import Noise

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results" / "p9-calibration"
SIZING = REPO / "docs" / "results" / "pilot-v2" / "sizing.json"
DRAWS = 20_000
POWER_SEEDS = (10, 20, 40, 80)
POWER_HORIZONS = (8, 10, 12)
PILOT_HORIZON = 8  # conf/experiment/p9/cpu_pilot.yaml


def build(draws: int = DRAWS) -> dict:
    sizing = json.loads(SIZING.read_text())
    noise = Noise(sizing["noise"]["sigma"], sizing["noise"]["tau"])
    cfg = ReportConfig()
    window = p9_window(cfg, list(range(1, cfg.v2_p9_horizon + 1)))
    power = {}
    for horizon in POWER_HORIZONS:
        at = ReportConfig(v2_p9_horizon=horizon)
        power[str(horizon)] = {str(s): p9_rates(reference_drift(horizon), s, noise, at, draws
                                                // 4)["confirmed"] for s in POWER_SEEDS}
    return {
        "how": "scripts/calibrate_p9.py: per-seed, per-generation log contrasts drawn as truth "
               "+ seed offset tau + generation noise sigma (simulate_v2.draw), judged by "
               "p2_matched_core over P9's window; Wilson 95% intervals",
        "noise": {"sigma": noise.sigma, "tau": noise.tau,
                  "source": "docs/results/pilot-v2/sizing.json (the version-2 pilot, pooled)"},
        "delta_1": cfg.v2_delta1, "delta_2": cfg.v2_delta2, "horizon": cfg.v2_p9_horizon,
        "window": window, "window_share": cfg.v2_p9_window_share, "seeds": cfg.v2_p9_seeds,
        "rows": calibration(noise, cfg, cfg.v2_p9_seeds, draws),
        "rows_at_the_pilots_horizon": {
            "horizon": PILOT_HORIZON,
            "rows": calibration(noise, ReportConfig(v2_p9_horizon=PILOT_HORIZON),
                                cfg.v2_p9_seeds, draws)},
        "power_bounded_by_horizon_and_seeds": power,
        "power_draws": draws // 4,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = json.dumps(build(), indent=2) + "\n"
    path = args.results / "calibration.json"
    if args.check:
        stale = not path.exists() or path.read_text() != text
        print("stale: calibration.json" if stale else "up to date")
        return 1 if stale else 0
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    for row in json.loads(text)["rows"]:
        print(f"{row['truth']}: {row['reads']} {100 * row['rate']:.1f}% "
              f"[{100 * row['interval'][0]:.1f}%, {100 * row['interval'][1]:.1f}%]")
    print("power (bounded truth) by horizon and seeds:",
          json.loads(text)["power_bounded_by_horizon_and_seeds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
