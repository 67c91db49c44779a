"""Prediction 9 (version 2): accumulation as Gerstgrasser et al. (2024) state it.

S_0 kept and every generation's synthetic prompts added (`loop.synthetic=accumulate_s0`, at
lambda = 0): the loop's excess risk stays bounded. The control is the same seed's
oracle-labelled *replace* loop (lambda = 0, the same steps, S_0, initialisation and test set;
every generation retrained from scratch on n prompts labelled by their true task): a stationary
control, whose expected excess risk does not change with the generation, so that the slope of
the log contrast log(E_acc / E_oracle-replace) is the accumulating loop's own drift. The arm's
own oracle twin trains on (i + 1) n real-like prompts: the reference learner's twin gains as
1 / (i + 1), which makes the contrast against it rise by construction (docs/THEORY.md section
8.10), so it is shown beside the verdict (`own_twin`), not decisive.

The test is P2's joint test (`p2_matched_core`): per seed, the slope over a window lies within
+-delta_2 (TOST) and the mean log contrast over generations 1..G lies significantly below
delta_1. The window starts at the generation from which the reference learner's own drift
rises by at most `v2_p9_window_share` x delta_2 per generation (`theory.accumulation.
window_start`: i_0 = 6 at delta_2 = 0.06) and must hold `v2_p9_min_window` generations.
Beside the verdict: the own-twin contrast and the twin's trend, and the other arms
(replace, accumulate without S_0, volume-matched) against their own oracle twins.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from icl_stl.report.document import Document
from icl_stl.report.evidence import Evidence
from icl_stl.report.extension_runs import base_settings
from icl_stl.report.groups import describe_group, group_by, natural_key
from icl_stl.report.matched import (
    MatchedLoop,
    base_config,
    labeller_of,
    matched_loops,
    readable,
)
from icl_stl.report.predictions.p1_matched_collapse import judged_window, v2_fields
from icl_stl.report.predictions.p2_matched_bounded import p2_matched_core
from icl_stl.report.rules import ReportConfig
from icl_stl.report.stats import CODES, slopes
from icl_stl.report.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    NOT_TESTED,
    REFUTED,
    UNDERPOWERED,
    V2,
    GroupResult,
    Prediction,
    describe_test,
    fields_of,
    finalise,
    fmt,
    largest,
)
from icl_stl.theory.accumulation import ARMS, reference_contrast, window_start

PRIMARY_ARM = "accumulate_s0"
CONTROL_ARM = "replace"  # the arm whose oracle-labelled loop is the control
CONTROL = ("the same seed's oracle-labelled replace loop (lambda = 0; same S_0, "
           "initialisation, test set and steps; n prompts labelled by their true task each "
           "generation, so its expected excess risk is the same in every generation)")
# The loops P9 counts: the transformer learning in context, no filter, schedule or task pool.
COUNTED_SETTING = {"model.arch": "gpt2", "loop.learner": "transformer",
                   "loop.real_schedule": "constant", "loop.filter": "none",
                   "task.n_tasks": None}


def rule(cfg: ReportConfig) -> str:
    i0 = p9_window_start(cfg)
    return (
        "Version 2 (docs/THEORY.md section 8.10, fixed from P9's pilot). Per group "
        "(configuration, regime, n) of loops that keep S_0 and accumulate every generation's "
        "synthetic prompts (lambda = 0, m = 0), the log contrast log(excess risk / the same "
        "seed's oracle-labelled replace loop's) per seed and generation, the first "
        f"{cfg.v2_p9_seeds} readable seeds in ascending order. The window starts at i_0 = {i0}, "
        f"where the reference learner's drift rises by at most {cfg.v2_p9_window_share:g} x "
        f"delta_2 per generation, and ends at G >= {cfg.v2_p9_horizon}, with at least "
        f"{cfg.v2_p9_min_window} generations. **Confirmed** (bounded) only when both hold at "
        f"{cfg.alpha:g}: the {1 - 2 * cfg.alpha:.0%} interval of the mean per-seed slope over "
        f"the window lies inside +-delta_2 = {cfg.v2_delta2:g} per generation (TOST), and the "
        f"mean log contrast over generations 1..G is significantly below delta_1 = "
        f"{cfg.v2_delta1:g}. **Refuted** when either part is significantly on the wrong side "
        "(Bonferroni over the two). The contrast against the arm's own oracle twin, that "
        "twin's trend and the other arms are shown, not decisive.")


def p9_window_start(cfg: ReportConfig) -> int:
    """i_0 of P9's window (module doc)."""
    return window_start(cfg.v2_delta2, cfg.v2_p9_window_share, PRIMARY_ARM)


def p9_window(cfg: ReportConfig, horizon: list[int]) -> list[int] | None:
    """The generations of P9's window within `horizon` (1..G), or None when it is too short."""
    i0 = p9_window_start(cfg)
    window = [g for g in horizon if g >= i0]
    return window if len(window) >= cfg.v2_p9_min_window else None


def arm_of(record: dict, settings: dict[str, dict]) -> str:
    """How the record's loop holds synthetic data: its own field, else its run's setting."""
    flat = settings.get(record.get("run", ""), {})
    return str(record.get("synthetic") or flat.get("loop.synthetic") or "replace")


def arm_loops(evidence: Evidence, cfg: ReportConfig) -> dict[str, list[MatchedLoop]]:
    """Matched loops (lambda = 0, m = 0) of each arm, paired with their own oracle twins."""
    out = {}
    for arm in ARMS:
        records = [r for r in evidence.records if arm_of(r, evidence.settings) == arm]
        loops = matched_loops(records, evidence.settings, cfg.gate_tolerance, cfg.failure_gap,
                              cfg.failure_train_ratio)
        out[arm] = [lp for lp in loops if lp.augment == 0 and lp.real_fraction == 0]
    return out


def against_replace_twin(evidence: Evidence, cfg: ReportConfig,
                         own: list[MatchedLoop]) -> list[MatchedLoop]:
    """Each accumulate_s0 model-labelled loop (lambda = 0, m = 0) matched with the same seed's
    oracle-labelled replace loop of the same base configuration (`extension_runs.
    base_settings`, without loop.synthetic and loop.labeller) and the same S_0: a MatchedLoop
    whose `control` is that loop's excess risk, labelled with the accumulating run's config.
    `own`: the accumulate_s0 loops against their own twins (`arm_loops`)."""
    picked, label = [], {}
    for r in evidence.records:
        flat = evidence.settings.get(r.get("run", ""), {})
        which = (arm_of(r, evidence.settings), labeller_of(r, flat))
        if which not in ((PRIMARY_ARM, "model"), (CONTROL_ARM, "oracle")):
            continue
        base = {k: v for k, v in base_settings(flat).items()
                if k not in ("loop.synthetic", "loop.labeller")}
        key = json.dumps(base, sort_keys=True, default=str)
        if which[0] == PRIMARY_ARM:
            label.setdefault(key, base_config(r.get("config", "")))
        picked.append({**r, "config": key})
    loops = matched_loops(picked, evidence.settings, cfg.gate_tolerance, cfg.failure_gap,
                          cfg.failure_train_ratio)
    # The loop's training-risk check compares it with its own oracle twin (the same volume of
    # data), not with the control, which fits n prompts over many more passes.
    twins = {_seed_key(lp): lp for lp in own}
    out = []
    for lp in loops:
        if lp.config not in label or lp.augment != 0 or lp.real_fraction != 0:
            continue
        lp = replace(lp, config=label[lp.config])
        twin = twins.get(_seed_key(lp))
        failures = lp.failures if twin is None else [
            f for f in twin.failures if f["arm"] == "model"] + [
            f for f in lp.failures if f["arm"] == "oracle"]
        out.append(replace(lp, failures=failures))
    return out


def _seed_key(loop: MatchedLoop) -> tuple:
    return (loop.config, loop.regime, loop.n, loop.seed)


def _counted(evidence: Evidence, arm: str, config: str) -> bool:
    """Whether every run holding the group's loops (`arm`, base configuration `config`) is in
    the setting P9 counts (`COUNTED_SETTING`)."""
    runs = {r.get("run", "") for r in evidence.records
            if arm_of(r, evidence.settings) == arm and labeller_of(r) == "model"
            and base_config(r.get("config", "")) == config}
    flats = [evidence.settings.get(run, {}) for run in runs]
    return bool(flats) and all(flat.get(k, v) == v for flat in flats
                               for k, v in COUNTED_SETTING.items())


def _own_twin(loops: list[MatchedLoop], seeds: list[int], window: list[int],
              horizon: list[int]) -> dict | None:
    """The read seeds' contrast against the arm's own oracle twin (shown, not decisive): its
    mean over 1..G, its slope over the window, and the twin's own slope of log excess risk."""
    mine = sorted((lp for lp in loops if lp.seed in seeds and set(horizon) <= set(lp.generations)),
                  key=lambda lp: lp.seed)
    if not mine:
        return None
    at = lambda lp, values, gens: [values[lp.generations.index(g)] for g in gens]  # noqa: E731
    contrast = np.array([at(lp, lp.contrast, horizon) for lp in mine])
    in_window = np.array([at(lp, lp.contrast, window) for lp in mine])
    twin = np.log(np.array([at(lp, lp.control, window) for lp in mine]))
    ref = np.diff(reference_contrast(max(window), PRIMARY_ARM)[window[0]:])
    return {"seeds": [lp.seed for lp in mine],
            "mean_log_contrast": float(contrast.mean()),
            "slope_over_window": float(slopes(window, in_window).mean()),
            "twin_trend": float(slopes(window, twin).mean()),
            "twin_trend_per_seed": [float(v) for v in slopes(window, twin)],
            "reference_learner_contrast_slope": float(ref.mean()),
            "meaning": "log(E_acc / E_oracle-acc) against the arm's own oracle twin, which "
                       "trains on (i + 1) n real-like prompts; the reference learner's twin "
                       "falls as 1/(i+1), so its contrast rises (reference_learner_contrast_"
                       "slope)"}


def _other_arms(by_arm: dict[str, list[MatchedLoop]], key: tuple, cfg: ReportConfig,
                window: list[int]) -> dict:
    """Each other arm's mean log contrast over 1..G and slope over the window (shown only)."""
    regime, n = key
    out = {}
    for arm, loops in by_arm.items():
        mine = [lp for lp in loops if arm != PRIMARY_ARM and (lp.regime, lp.n) == key]
        group = readable(mine, cfg.v2_p9_seeds)
        horizon = judged_window(group)
        if not group.loops or not set(window) <= set(horizon):
            continue
        level = group.matrix(horizon).mean(-1)
        trend = slopes(window, group.matrix(window))
        out[arm] = {"seeds": len(group.loops), "mean_log_contrast": float(level.mean()),
                    "slope_over_window": float(trend.mean()), "left_out": group.left_out}
    return out


def _fields(res: GroupResult, group, cfg: ReportConfig, margins: dict) -> GroupResult:
    """The version-2 fields (`v2_fields`), with P9's control."""
    res = v2_fields(res, group, cfg, margins)
    res.control = CONTROL
    return res


def _group(name: str, loops: list[MatchedLoop], own: list[MatchedLoop],
           cfg: ReportConfig) -> GroupResult:
    group = readable(loops, cfg.v2_p9_seeds)
    horizon = judged_window(group)
    i0 = p9_window_start(cfg)
    margins = {"delta_1": cfg.v2_delta1, "delta_2": cfg.v2_delta2, "i_0": i0,
               "window_share": cfg.v2_p9_window_share}
    G = max(horizon, default=0)
    if not group.loops or G < cfg.v2_p9_horizon:
        res = GroupResult(name, NOT_TESTED, n_seeds=len(group.loops), numbers=(
            f"{len(group.loops)} readable loop(s) with the replace arm's oracle-labelled loop "
            f"of the same seed, generations 1..{G}: needs a horizon of {cfg.v2_p9_horizon}"))
        return _fields(res, group, cfg, margins)
    window = p9_window(cfg, horizon)
    if window is None:
        res = GroupResult(name, NOT_APPLICABLE, n_seeds=len(group.loops), numbers=(
            f"window from i_0 = {i0} to G = {G} holds fewer than {cfg.v2_p9_min_window} "
            "generations"))
        return _fields(res, group, cfg, margins)
    test = p2_matched_core(group.matrix(window), window, group.matrix(horizon), cfg)
    f = fields_of(test)
    res = GroupResult(name, CODES[int(test["code"])], f["estimate"], f["interval"],
                      cfg.v2_delta2, int(test["n_seeds"]), f["min_detectable_effect"],
                      float(test["p_refute"]),
                      statistic="slope of log(E_acc / E_oracle-replace)")
    below = fields_of(test["below"])
    res.parts["p1_statistic_below_delta_1"] = {**below, "margin": cfg.v2_delta1,
                                               "verdict": CODES[int(test["below"]["code"])]}
    twin = _own_twin(own, [lp.seed for lp in group.loops], window, horizon)
    res.parts["own_twin"] = twin
    res.numbers = (f"window generations {window[0]}-{window[-1]}; "
                   + describe_test(res, "/gen") + f"; mean log contrast "
                   f"{fmt(below['estimate'])} [{fmt(below['interval'][0])}, "
                   f"{fmt(below['interval'][1])}] against delta_1 = {cfg.v2_delta1:g}"
                   + ("" if twin is None else
                      f"; against its own oracle twin (not decisive) "
                      f"{fmt(twin['mean_log_contrast'])}, slope "
                      f"{fmt(twin['slope_over_window'])}/gen, the twin's own trend "
                      f"{fmt(twin['twin_trend'])}/gen"))
    return _fields(res, group, cfg, margins)


def verdict(evidence: Evidence, cfg: ReportConfig) -> Prediction:
    pred = Prediction(9, "Accumulation with S_0 kept (Gerstgrasser et al., 2024): excess risk "
                      "stays bounded against the same seed's oracle-labelled replace loop.",
                      rule(cfg), (CONFIRMED, REFUTED, INCONCLUSIVE, UNDERPOWERED,
                                  NOT_APPLICABLE),
                      rules_version=V2,
                      primary_rule=f"the counted group of regime {cfg.v2_regime} with the "
                                   "largest n")
    by_arm = arm_loops(evidence, cfg)
    where = lambda lp: (lp.config, lp.regime, lp.n)  # noqa: E731
    grouped = group_by(against_replace_twin(evidence, cfg, by_arm[PRIMARY_ARM]), where)
    owned = group_by(by_arm[PRIMARY_ARM], where)
    for key in sorted(set(grouped) | set(owned), key=natural_key):
        (config, regime, n), loops = key, grouped.get(key, [])
        res = _group(describe_group(config, regime=regime, n=n), loops, owned.get(key, []),
                     cfg)
        res.counted = _counted(evidence, PRIMARY_ARM, config)
        res.key = {"n": n, "primary_regime": regime == cfg.v2_regime}
        if res.margins.get("i_0") is not None and res.verdict not in (NOT_TESTED,
                                                                      NOT_APPLICABLE):
            horizon = judged_window(readable(loops, cfg.v2_p9_seeds))
            window = p9_window(cfg, horizon) or []
            res.parts["other_arms"] = _other_arms(by_arm, (regime, n), cfg, window)
        pred.groups.append(res)
    return finalise(pred, cfg, lambda gs: largest(
        [g for g in gs if g.key.get("primary_regime")] or gs, "n"))


def section(doc: Document, evidence: Evidence, pred: Prediction) -> None:
    """P9's groups (the matched figures of each run are Prediction 1's)."""
    doc.add("## Prediction 9: accumulation with S_0 kept", "",
            "Each accumulating loop against the same seed's oracle-labelled replace loop, a "
            "control whose expected excess risk is the same in every generation "
            "(docs/THEORY.md section 8.10). The accumulating loop's own oracle twin trains on a "
            "growing volume of real-like prompts: the contrast against it and the twin's own "
            "trend over the window are listed beside each verdict.", "")
    doc.verdict_table(pred)
