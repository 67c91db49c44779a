"""What a loop records: each generation's per-member records, its W&B scalars, and the summary.

A mixin of `LoopRun` (icl_stl/loop/runner.py), which holds the state these methods read: the
members and their plans, the test sets, the learner, the Bayes predictions and the timers.
"""

from __future__ import annotations

import time

from icl_stl.data.prompts import PromptSet
from icl_stl.loop.fidelity import NO_SYNTHETIC, generator_fidelity
from icl_stl.loop.filtering import no_filter_record
from icl_stl.loop.metrics import generation_record, member_bayes_excess
from icl_stl.loop.mixing import real_counterpart
from icl_stl.loop.progress import group_metrics
from icl_stl.loop.timing import write_timing
from icl_stl.runs.provenance import code_provenance
from icl_stl.training.evaluation import summarise


class LoopRecords:
    """Records of a `LoopRun`: per generation and member, and the run's summary."""

    def _evaluate(self, i: int, sets, reals, new, train_info: dict, ridge_risk: float,
                  zero_risk: float) -> list:
        # (K, n_test, k) errors and predictions
        test_errors, predictions, calibration = self.learner.test_metrics(self.test_set)
        excess = member_bayes_excess(predictions, self.bayes, self.test_set.d)
        prior_risks = [{} for _ in self.members]
        if self.pool is not None:  # the same learners on the Gaussian prior's tasks
            prior_risks = self.tests.prior_distances(self.learner.predictions(self.tests.prior),
                                                     self.s.task.noise_std, self.ridge_alpha)
        # S_i = concat(real part, synthetic) (`_datasets`): the real risk is a prefix's.
        train_risks, real_risks = self.learner.member_risks(sets, [len(r) for r in reals])
        extra = (self.extra_metrics(i, self.learner, sets, new) if self.extra_metrics
                 else [{}] * len(self.members))
        records = []
        steps = train_info.get("member_steps") or [train_info["steps"]] * len(self.members)
        for m, member in enumerate(self.members):
            plan = self.plans[m][i]
            rec = {"member": m, **member.describe(), **self.loop_fields[m], "generation": i,
                   "real_fraction_i": plan.real_fraction,
                   "n_real": plan.n_real, "n_synthetic_new": plan.n_synthetic,
                   "train_size": len(sets[m]), **self._arm_record(m, reals),
                   **generation_record(test_errors[m], train_risks[m], real_risks[m],
                                       ridge_risk, zero_risk, excess[m]),
                   **self._fidelity(i, m, new[m]), **self._filter_record(i, m),
                   **self._weight_record(),
                   **prior_risks[m], **calibration[m],
                   "train_loss": train_info["train_loss"][m], "steps": steps[m],
                   **(train_info["early_stopping"][m] if "early_stopping" in train_info else {}),
                   **extra[m]}
            records.append(rec)
        return records

    def _fidelity(self, i: int, m: int, synthetic: PromptSet) -> dict:
        """Member m's generation-i synthetic prompts against real labels of the same x's."""
        if i == 0:
            return dict(NO_SYNTHETIC)
        real = real_counterpart(self.members[m], self.plans[m][i], self.task, self.k)
        if i in self._filtered:  # the kept prompts' real counterparts
            real = real[self._filtered[i][m]["index"].to(real.xs.device)]
        return generator_fidelity(synthetic, real)

    def _arm_record(self, m: int, reals) -> dict:
        """How S_i holds synthetic data where it is not replace (left out then, so that a
        default run's records stay as they were): the arm, and the real prompts it trains on
        (all of S_0 for the arms that keep it). |S_i| is `train_size`."""
        arm = self.s.loop.synthetic
        return {} if arm == "replace" else {"synthetic": arm, "n_real": len(reals[m])}

    def _weight_record(self) -> dict:
        """With `loop.real_weight` set, the weight and the real source (the P10 report groups
        loops by them); nothing otherwise, so records of runs without it are unchanged."""
        loop = self.s.loop
        if loop.real_weight is None:
            return {}
        return {"real_weight": loop.real_weight, "real_source": loop.real_source}

    def _filter_record(self, i: int, m: int) -> dict:
        if self.s.loop.filter == "none":
            return {}
        return no_filter_record() if i == 0 else dict(self._filtered[i][m]["record"])

    def _log_generation(self, i: int, records: list[dict]) -> None:
        """Each loop's scalars (to its own W&B run, see `RunLogger.open_member_runs`) and, for
        several loops, the job's per-group median [min, max] of the test risk; once per
        generation across kills (`RunLogger.log_generation`)."""
        if self.logger is None:
            return
        # What identifies a loop is in its run's config, not a metric.
        skip = {"generation", "member", *self.members[0].describe()}
        self.logger.log_generation(
            i, [{f"gen/{k}": v for k, v in rec.items()
                 if isinstance(v, (int, float)) and k not in skip} for rec in records],
            job=group_metrics([r["test_risk"] for r in records], self.groups, "gen/test_risk")
            if len(records) > 1 else None)

    def _summary(self, records: list[dict], base: dict, alpha: float, timings: list,
                 base_prior: dict | None = None) -> dict:
        summary = {
            "members": self._members(),
            "generations": records,
            "baselines": {name: summarise(err) for name, err in base.items()},
            **({} if base_prior is None else {
                "baselines_prior": {name: summarise(err) for name, err in base_prior.items()}}),
            "ridge_alpha": alpha,
            "settings": self.s.identity(),
            "checkpoint_dir": str(self.checkpoint_dir),
            "code": code_provenance(),
        }
        if self.run_dir is not None:
            # Wall times differ between runs; they go beside, not into, summary.json.
            write_timing(self.run_dir, timings, {
                "seconds": round(time.perf_counter() - self._started, 4),
                "phases": self.run_clock.record()})
        return summary
