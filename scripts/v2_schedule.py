"""The confirmatory reproduction's work, cut into parts (used by scripts/reproduce_v2.py).

Words:
- an *arm* is a kind of loop of the programme: `p1` (lambda = 0 beside its oracle twin), `p2`
  (lambda = 0.5 beside its twin), `lambda1` (the secondary lambda = 1 loop, model-labelled),
  and in the second setting `p6` (p1's loops under the residual filter; scripts/v2_arms.py);
- a *block* is one ensemble run of an arm: a few seeds, trained together (one `icl-stl-loop`
  process, one thread), with its own run name, directory and checkpoints;
- a *segment* is the generations of one block that a part trains (loop.generations grows: a
  later part continues the same loops from their checkpoints);
- a *part* is what one invocation runs: segments spread over the workers (processes), sized to
  fit `part_minutes` at the estimated seconds per generation;
- a *gate block* (arm `gate`, settings with the gate-first stage: scripts/v2_gate.py) trains
  only generation 0 of candidate seeds, before the loops' blocks are made from those that pass.

Blocks are fixed once made (a block's members are its identity): the primary seeds' blocks when
the programme starts, a block of spares when the rules need them, a lambda = 1 block for the
seeds that ran. Seeds keep their fixed ascending order throughout.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from v2_arms import GATE, SECONDARY, matched_arms  # noqa: F401 (GATE, SECONDARY: re-exported)

MATCHED = ("p1", "p2")  # the arms with an oracle twin that every setting has (v2_arms: all)


@dataclass(frozen=True)
class Block:
    arm: str
    seeds: tuple[int, ...]
    matched: bool  # two members (model, oracle) per seed, sharing generation 0

    @property
    def name(self) -> str:
        s = self.seeds
        contiguous = list(s) == list(range(s[0], s[0] + len(s)))
        seeds = f"{s[0]}-{s[-1]}" if contiguous and len(s) > 1 else "_".join(map(str, s))
        return f"{self.arm}-{seeds}"

    def trained_members(self, generation: int) -> int:
        """Members trained in a generation: generation 0 once per seed (shared by the twins)."""
        return len(self.seeds) * (2 if self.matched and generation > 0 else 1)

    def last_generation(self, horizon: int) -> int:
        """The block's last generation: the programme's horizon, 0 for a gate block."""
        return 0 if self.arm == GATE else horizon

    def to_json(self) -> dict:
        return {"arm": self.arm, "seeds": list(self.seeds), "matched": self.matched}

    @classmethod
    def from_json(cls, data: dict) -> Block:
        return cls(data["arm"], tuple(data["seeds"]), bool(data["matched"]))


def chunks(seeds: list[int], size: int) -> list[tuple[int, ...]]:
    """`seeds` in order, cut into the fewest blocks of at most `size`, as even as can be (ten
    seeds at five a block: 5 + 5; at four: 4 + 3 + 3): a block's generation takes about as
    long with fewer members, so an even cut wastes least."""
    return even_cut(seeds, -(-len(seeds) // size))


def one_member_chunks(seeds: list[int], block_seeds: int, workers: int) -> list[tuple[int, ...]]:
    """Blocks of loops that train one member per seed (the lambda = 1 loops, a gate round): at
    most twice a matched block's seeds (as many members), and at least one per worker. Such
    blocks run last in their stage (the lambda = 1 loops after every matched block, a gate
    round before the loops it decides), so a lone one would leave the other workers idle for
    its whole length. A member's numbers do not depend on its companions, so the cut changes
    no result, only the wall time."""
    return even_cut(seeds, max(-(-len(seeds) // (2 * block_seeds)), min(workers, len(seeds))))


def block_workers(prog: dict) -> int:
    """The workers a programme's one-member blocks are cut for: those of the invocation that
    started it (1 for a programme started before they were recorded, as its blocks were cut)."""
    return prog.get("workers", 1)


def even_cut(seeds: list[int], count: int) -> list[tuple[int, ...]]:
    """`seeds` in order, in `count` blocks whose sizes differ by one at most, larger first."""
    out, start = [], 0
    for i in range(count):
        n = len(seeds) // count + (i < len(seeds) % count)
        out.append(tuple(seeds[start:start + n]))
        start += n
    return out


def primary_blocks(arms: dict, block_seeds: int, workers: int) -> list[Block]:
    """The blocks of the seeds the rules read, P1's and P2's interleaved so that both fill from
    their first seeds, then the lambda = 1 loops of the same seeds."""
    matched = [[Block(arm, c, True) for c in chunks(arms[arm]["seeds"][:arms[arm]["count"]],
                                                     block_seeds)] for arm in matched_arms(arms)]
    order = [b for row in _interleave(*matched) for b in row]
    seeds = sorted({s for arm in matched_arms(arms)
                    for s in arms[arm]["seeds"][:arms[arm]["count"]]})
    return order + [Block(SECONDARY, c, False)
                    for c in one_member_chunks(seeds, block_seeds, workers)]


def _interleave(*lists: list) -> list[list]:
    out = []
    for i in range(max(len(x) for x in lists)):
        out.append([x[i] for x in lists if i < len(x)])
    return out


def spares_needed(arm: dict, unreadable: set[int], requested: list[int]) -> list[int]:
    """The next spare seeds to run: one for each seed read so far that is unreadable (missed
    the gate or failed to train), up to the spares the preset lists."""
    spares = arm["seeds"][arm["count"]:]
    ran = arm["seeds"][:arm["count"]] + requested
    missing = len([s for s in ran if s in unreadable]) - len(requested)
    return [s for s in spares if s not in requested][:max(0, missing)]


@dataclass
class Estimator:
    """Seconds per generation of a block, from the generations measured so far and, until one
    exists at a size, a prior scaled to the measured ones. `this_machine` holds the timings of
    the machine the part runs on (a subset of the others)."""

    prior_step_seconds: dict[int, float]  # trained members -> seconds per optimizer step
    steps: int
    speedup: float = 1.0
    measured: dict[int, list[float]] = field(default_factory=dict)  # members -> seconds
    prior_label: str = "the prior"
    # gate blocks' generations (more members evaluated per member trained): members -> seconds
    gate_measured: dict[int, list[float]] = field(default_factory=dict)
    this_machine: Estimator | None = None

    def prior(self, members: int) -> float:
        return per_step(self.prior_step_seconds, members) * self.steps / self.speedup

    def timed(self) -> dict[int, float]:
        """Median seconds by members: the loop generations', else the gate's."""
        return ({k: statistics.median(v) for k, v in self.measured.items() if v}
                or {k: statistics.median(v) for k, v in self.gate_measured.items() if v})

    def seconds(self, members: int) -> float:
        """A loop block's generation, from the loop generations timed so far, or from the
        gate's until a loop generation is timed (a gate generation evaluates more per member
        trained, so it errs long); the prior until anything is timed. Between two timed sizes
        linear; above the largest in proportion to the members; below the smallest as the
        smallest (`per_step` on the timed table). The members' cost depends on the machine:
        on the first CPU a generation of 10 members took twice one of 5, on the second (AMD
        EPYC) 1,050-1,340 s against 942 s (docs/results/cpu-v2/runs/*/timing.json), and the
        uncompiled pilot's prior is nearly flat. So where one size is timed the estimate of
        another errs long on either machine. And a machine slower than the record plans from
        its own timings once it has any (the larger of the two estimates): a 10-member
        generation took 749 s on one CPU and 1,900 s on another, so that a part stays within
        its hour on the machine that runs it."""
        timed = self.timed()
        if not timed:
            return self.prior(members)
        here = self.this_machine.timed() if self.this_machine else {}
        return max(per_step(timed, members), per_step(here, members) if here else 0.0)

    def block_seconds(self, block: Block, generation: int) -> float:
        """Seconds for `generation` of `block`. A gate block's from the gate blocks timed so
        far (the larger of all machines' and this one's), scaled like `seconds` (their ratio
        to the loops' estimate) where its size is new."""
        members = block.trained_members(generation)
        if block.arm != GATE or not self.gate_measured:
            return self.seconds(members)
        if self.gate_measured.get(members):
            here = self.this_machine.gate_measured.get(members) if self.this_machine else None
            return max(statistics.median(self.gate_measured[members]),
                       statistics.median(here) if here else 0.0)
        ratios = [statistics.median(v) / self.seconds(k) for k, v in self.gate_measured.items()]
        return self.seconds(members) * statistics.median(ratios)

    def source(self) -> str:
        sizes = ", ".join(f"{k} members: {len(v)}" for k, v in sorted(self.measured.items()))
        if not sizes:
            return f"{self.prior_label}, speedup {self.speedup:g}"
        here = sum(map(len, self.this_machine.measured.values())) if self.this_machine else 0
        return f"measured generations ({sizes}{f'; {here} on this machine' if here else ''})"


def per_step(table: dict[int, float], members: int) -> float:
    """Seconds per step at `members` from a table by ensemble size: linear between two known
    sizes, the smallest's below them, proportional above them."""
    known = sorted(table)
    if members in table:
        return table[members]
    if members < known[0]:
        return table[known[0]]
    if members > known[-1]:
        return table[known[-1]] * members / known[-1]
    lower = max(k for k in known if k < members)
    upper = min(k for k in known if k > members)
    return table[lower] + (table[upper] - table[lower]) * (members - lower) / (upper - lower)


@dataclass
class Segment:
    worker: int
    block: Block
    first: int  # first generation to train
    last: int  # loop.generations for this segment
    estimate_s: float

    def to_json(self) -> dict:
        return {"worker": self.worker, "block": self.block.name, "first": self.first,
                "last": self.last, "estimate_s": round(self.estimate_s, 1)}


def pack(pending: list[tuple[Block, int]], horizon: int, workers: int, budget_s: float,
         estimate: Estimator) -> list[Segment]:
    """Segments of one part: blocks in their order, each on the least-loaded worker, as many
    of its remaining generations as fit in `budget_s` there (at least one generation per part,
    so that a slow machine still moves). `pending`: (block, first generation not finished)."""
    clocks = [0.0] * workers
    out: list[Segment] = []
    for block, first in pending:
        w = min(range(workers), key=lambda i: (clocks[i], i))
        last, spent = first - 1, 0.0
        for g in range(first, block.last_generation(horizon) + 1):
            cost = estimate.block_seconds(block, g)
            if clocks[w] + spent + cost > budget_s and (out or last >= first):
                break
            last, spent = g, spent + cost
        if last < first:
            break  # not one more generation fits on the least-loaded worker: the part is full
        out.append(Segment(w, block, first, last, spent))
        clocks[w] += spent
    return out


def makespan(segments: list[Segment], workers: int) -> float:
    return max((sum(s.estimate_s for s in segments if s.worker == w) for w in range(workers)),
               default=0.0)
