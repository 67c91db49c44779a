"""The version-2 programme's runs, as shapes for `icl_stl.bench.estimate`.

docs/THEORY.md section 8.1 fixes the primary groups: d = 2, k = 6, no label noise, n = 10,000,
tiny GPT-2, batch 64, 6,000 steps per generation from scratch, G = 8; P1 at lambda = 0 with 10
seeds, P2 at lambda = 0.5 with 20, each loop beside its oracle-labelled twin (two arms), the
lambda = 1 loop as the secondary control, 30,000 test prompts per loop. Generation 0 is shared by
a seed's loops (both arms and every lambda), so it trains once per seed; P1's seeds are among
P2's. At lambda = 1 there are no synthetic prompts, so its oracle twin would be the same loop:
one arm.

The Garg-scale programme is the same design at Garg et al.'s size (d = 20, k = 41, `standard`:
12 layers, 8 heads, width 256). Its steps per generation have not been measured (no GPU has
been lent; steps to ridge at d = 20 take hours on the CPU): `GARG_STEPS_ASSUMED` is Garg et al.'s
curriculum length (d and k grow to 20 and 41 over the first 30,000 steps) plus 20,000 steps at
full size, an assumption the estimate names. Its n is 100,000: at 50,000 steps of batch 64, n =
10,000 would be 320 passes over S_0.

    packing "one":       every loop of the programme in one ensemble (what a GPU preset runs)
    packing "by-lambda": one run per lambda (as the CPU presets are split)
"""

from __future__ import annotations

from icl_stl.bench.estimate import RunShape
from icl_stl.config import AppConfig, ModelConfig
from icl_stl.models.model import MODEL_SIZES

# lambda -> (seeds, arms) of the version-2 programme (docs/THEORY.md 8.1).
V2_GROUPS = {0.0: (10, 2), 0.5: (20, 2), 1.0: (20, 1)}
V2_GENERATIONS = 8
CPU_SCALE = {"model": "tiny", "d": 2, "k": 6, "steps": 6_000, "n": 10_000}
GARG_STEPS_ASSUMED = 50_000
GARG_SCALE = {"model": "standard", "d": 20, "k": 41, "steps": GARG_STEPS_ASSUMED, "n": 100_000}
PROGRAMMES = {"v2-cpu": CPU_SCALE, "v2-garg": GARG_SCALE}
PACKINGS = ("one", "by-lambda")


def v2_programme(scale: dict, packing: str = "one", steps: int | None = None,
                 groups: dict[float, tuple[int, int]] | None = None,
                 generations: int = V2_GENERATIONS, batch: int = 64,
                 eval_prompts: int = 30_000) -> list[RunShape]:
    """The version-2 programme at `scale` (CPU_SCALE or GARG_SCALE) as run shapes."""
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
    groups = groups or V2_GROUPS
    model = ModelConfig(**MODEL_SIZES[scale["model"]])
    steps = steps or scale["steps"]
    common = {"model": model, "d": scale["d"], "k": scale["k"], "batch": batch,
              "steps_first": steps, "steps_later": steps, "generations": generations,
              "n": scale["n"], "eval_prompts": eval_prompts}
    if packing == "one":
        seeds = max(s for s, _ in groups.values())  # every group's seeds are among the largest's
        return [RunShape(name="all", members_first=seeds,
                         members_later=sum(s * arms for s, arms in groups.values()), **common)]
    return [RunShape(name=f"lambda={lam:g}", members_first=seeds, members_later=seeds * arms,
                     **common) for lam, (seeds, arms) in groups.items()]


def shape_from_app(app: AppConfig, name: str) -> RunShape:
    """A loop preset's run as one shape: its members product (lambda = 1's oracle twin, the
    same loop, counted once), generation 0 shared per (seed, n) where the preset shares it."""
    m, loop, train = app.members, app.loop, app.train
    seeds, ns = len(m.seeds or [0]), len(m.ns or [0])
    # At lambda = 1 the oracle twin's S_i is the loop's: the learner trains it once.
    arms = sum(1 if lam == 1 else len(m.labellers or [0])
               for lam in (m.real_fractions or [loop.real_fraction]))
    members = seeds * ns * len(m.augments or [0]) * arms
    first = seeds * ns if loop.share_generation_0 else members
    return RunShape(name=name, model=app.model, d=app.task.d, k=app.task.k,
                    batch=train.batch_size, steps_first=train.steps,
                    steps_later=loop.steps if loop.steps is not None else train.steps,
                    generations=loop.generations, members_first=first, members_later=members,
                    n=max(m.ns or [app.data.n or 0]) or 10_000,
                    eval_prompts=app.eval.n_prompts, eval_batch=app.eval.batch_size,
                    label_batch=loop.label_batch_size)
