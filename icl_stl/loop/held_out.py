"""The loop's test sets and, with a task pool (`task.n_tasks`), the pool and its baselines.

Without a pool the loop has one test set, fresh prompts from the Gaussian prior (`TEST_STREAM`
of the run's seed), as always. With a pool of M tasks (drawn once per run from the run's seed,
`task_pool.POOL_STREAM`, and shared by every member) the loop's test set draws from the pool:
`test_risk`, the baselines and the training gate are in-distribution, and `dmmse` joins the
baselines. The prior's test set is kept beside it, where dMMSE and ridge differ most
(Raventós et al. evaluate on both): `test_risk_prior` and `baselines_prior` (ridge, dmmse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from icl_stl.config import TaskConfig
from icl_stl.data.prompts import TEST_STREAM, PromptSet, draw_test_prompts
from icl_stl.data.seeding import make_generator
from icl_stl.data.task_pool import POOL_STREAM, TaskPool, dmmse, draw_pool, sample_pool_prompts
from icl_stl.data.tasks import Task
from icl_stl.training.baselines import ridge
from icl_stl.training.evaluation import baseline_errors
from icl_stl.training.losses import squared_error

__all__ = ["LoopTestSets", "loop_test_sets"]


@dataclass(frozen=True)
class LoopTestSets:
    test: PromptSet  # the loop's test set (the pool's, with a pool)
    pool: TaskPool | None = None
    prior: PromptSet | None = None  # with a pool: the Gaussian prior's test set
    # (noise_std, ridge_alpha) -> ridge's and dMMSE's predicted means on `prior`, (n, k) each:
    # the same at every generation, so computed once.
    _prior_baselines: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def prior_baseline_predictions(self, noise_std: float, ridge_alpha: float
                                   ) -> dict[str, Tensor]:
        """{ridge, dmmse}: their predicted means on the prior's test set, (n, k)."""
        key = (noise_std, ridge_alpha)
        if key not in self._prior_baselines:
            xs, ys = self.prior.xs.cpu(), self.prior.ys.cpu()
            self._prior_baselines[key] = {"ridge": ridge(xs, ys, ridge_alpha),
                                          "dmmse": dmmse(xs, ys, self.pool, noise_std)}
        return self._prior_baselines[key]

    def dmmse_errors(self, prompts: PromptSet, noise_std: float) -> Tensor:
        """dMMSE's per-position squared errors / d on `prompts`: (n, k)."""
        xs, ys = prompts.xs.cpu(), prompts.ys.cpu()
        return squared_error(dmmse(xs, ys, self.pool, noise_std), ys, prompts.d)

    def prior_distances(self, predictions: Tensor, noise_std: float, ridge_alpha: float
                        ) -> list[dict[str, float]]:
        """Per member, how far its predicted means on the prior's test set lie from ridge's and
        from dMMSE's, mean squared difference / d (P8: which Bayes predictor a learner trained on
        the pool tracks, Raventos et al.'s measure), with its risk there. predictions (K, n, k).
        Empty dicts without a pool."""
        if self.pool is None:
            return [{} for _ in range(predictions.shape[0])]
        ys, d = self.prior.ys.cpu(), self.prior.d
        base = self.prior_baseline_predictions(noise_std, ridge_alpha)
        to_ridge = squared_error(predictions, base["ridge"], d)  # (K, n, k)
        to_dmmse = squared_error(predictions, base["dmmse"], d)
        risk = squared_error(predictions, ys, d)
        return [{"test_risk_prior": risk[m].mean().item(),
                 "prior_distance_ridge": to_ridge[m].mean().item(),
                 "prior_distance_dmmse": to_dmmse[m].mean().item()}
                for m in range(predictions.shape[0])]

    def pool_baselines(self, noise_std: float, ridge_alpha: float
                       ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """(extra baselines on the loop's test set, baselines on the prior's test set): ({}, None)
        without a pool; ({dmmse}, {ridge, dmmse}) with one. Errors (n, k) per name."""
        if self.pool is None:
            return {}, None
        prior = baseline_errors(self.prior, ["ridge"], ridge_alpha=ridge_alpha, knn_neighbours=1)
        prior["dmmse"] = squared_error(
            self.prior_baseline_predictions(noise_std, ridge_alpha)["dmmse"],
            self.prior.ys.cpu(), self.prior.d)
        return {"dmmse": self.dmmse_errors(self.test, noise_std)}, prior


def loop_test_sets(task: Task, task_cfg: TaskConfig, n_prompts: int, k: int,
                   seed: int) -> LoopTestSets:
    """The run's test sets (module doc); the pool too when `task_cfg.n_tasks` is set."""
    prior = draw_test_prompts(task, n_prompts, k, seed)
    if task_cfg.n_tasks is None:
        return LoopTestSets(prior)
    pool = draw_pool(task, task_cfg.n_tasks, make_generator(seed, POOL_STREAM))
    test = sample_pool_prompts(task, pool, n_prompts, k, make_generator(seed, TEST_STREAM))
    return LoopTestSets(test, pool, prior)
