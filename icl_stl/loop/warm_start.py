"""What a warm-started generation needs to get back to ridge.

Generation 0 trains on S_0 with the run's recipe. Generation 1 starts from its weights
(`loop.init=warm_start`) and trains on S_1, the loop's own mix of λn real prompts and (1 - λ)n
prompts labelled by generation 0, under the loop's budget for later generations (`loop.steps`,
`loop.warmup_steps`). Its test risk is evaluated every `eval_every` steps from the first, so the
curve shows how far the new data moves the model and how many steps it needs to pass the
training gate again. The data, labels and training are the loop's own (`TransformerLearner`,
`icl_stl.loop.mixing`).
"""

from __future__ import annotations

from dataclasses import asdict, replace

from icl_stl.config import EvalConfig, LoopConfig, ModelConfig, TaskConfig, TrainConfig
from icl_stl.data.prompts import PromptSet
from icl_stl.data.tasks import make_task
from icl_stl.loop.learners import LearnerContext, TransformerLearner
from icl_stl.loop.mixing import MemberSpec, draw_s0, real_part, synthetic_inputs
from icl_stl.loop.plan import plan_generation
from icl_stl.training.engine import RuntimeOptions
from icl_stl.training.gate import gap_closed, reached_ridge
from icl_stl.training.ridge_time import GateMonitor, RidgeTarget, StopTraining


def warm_start_time_to_ridge(task_cfg: TaskConfig, model_cfg: ModelConfig,
                             train_cfg: TrainConfig, loop_cfg: LoopConfig, *, n: int,
                             real_fraction: float, seed: int, target: RidgeTarget,
                             eval_every: int = 50, max_seconds: float = float("inf"),
                             stop_at_ridge: bool = False,
                             runtime: RuntimeOptions | None = None) -> dict:
    """Generation 0's test risk and gate, then generation 1's time to ridge from a warm start.

    By default generation 1 trains its whole budget, as in the loop, so its curve also shows
    where it settles (`final_risk`) and whether it is still past the gate there."""
    runtime = runtime or RuntimeOptions()
    task, k = make_task(task_cfg), task_cfg.k
    # An unfiltered generation 1 (a filter's larger labelled pool is the loop's business).
    loop = replace(loop_cfg, init="warm_start", real_fraction=real_fraction, filter="none",
                   filter_keep=1.0, filter_threshold=None)
    train = replace(train_cfg, log_every=eval_every, checkpoint_every=0)
    ctx = LearnerContext(task, k, model_cfg, train, loop, EvalConfig(), runtime)
    member = MemberSpec(seed=seed, real_fraction=real_fraction, n=n)
    learner = TransformerLearner(ctx, [member])

    def test_risk() -> float:
        return learner.errors(target.prompts)[0].mean().item()

    s0 = draw_s0(task, member, k)
    learner.fit(0, [s0], None)
    generation_0 = test_risk()
    plan = plan_generation(loop, member, 1)
    real, _ = real_part(loop, member, s0, plan, task, k)
    synthetic = learner.synthesize(1, [synthetic_inputs(loop, member, plan, task, k)])[0]
    monitor = GateMonitor(test_risk, target, max_seconds, stop_at_ridge)
    try:
        learner.fit(1, [PromptSet.concat([real, synthetic])], None, on_log=monitor)
    except StopTraining:
        pass
    return {"generation_0_risk": generation_0,
            "generation_0_gap_closed": gap_closed(generation_0, target.ridge_risk,
                                                  target.zero_risk),
            "generation_0_reached": reached_ridge(generation_0, target.ridge_risk,
                                                  target.zero_risk),
            "generation_1": asdict(monitor.result()),
            "generation_1_final_reached": bool(monitor.curve) and reached_ridge(
                monitor.curve[-1][2], target.ridge_risk, target.zero_risk)}
