"""GPU time of a programme of loop runs: sum over its runs of generations x steps x one step.

At widths of 64-256 a GPU training step is bound by kernel launches, not arithmetic: a tiny
GPT-2 step of 80 members is under a millisecond of tensor-core work but several hundred kernels.
So one step's time is modelled as

    step_s(K) = max(launch_s x kernels_per_step, K x flops_per_member_step / (peak x efficiency))

and a generation adds its evaluation and labelling passes, modelled the same way (forward
kernels per batch, forward FLOPs). Where a GPU is there, `measure_step_s` times real steps
instead and the model is not used for training steps (icl_stl/bench/gpu_steps.py measures
both the kernel counts and the step times).

Which figures are measured and which assumed:
- kernels per step and per forward: *counted* by running the engine on the CPU with bf16
  autocast and counting the aten operators that reach a backend kernel (views and allocations
  left out). Each is one GPU kernel or close to it; a fused AdamW (the GPU default) launches
  fewer than the CPU's foreach optimizer, so the count errs high for the optimizer's part.
- FLOPs: counted from the model's shapes (6 x non-embedding parameters x tokens, plus the
  attention matmuls), per member.
- launch_s, peak, efficiency, device memory: `GpuAssumptions`, named and overridable; the
  defaults are stated there with their reasons. Every output says which were assumed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from icl_stl.config import ModelConfig
from icl_stl.models.model import ICLModel

# Dense bf16 tensor-core peaks, TFLOP/s (NVIDIA's datasheets, SXM parts, without sparsity).
GPU_PEAKS_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
GPU_MEMORY_GIB = {"H100": 80.0, "H200": 141.0, "A100": 80.0}
ADAM_BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments
# Activation bytes kept for backward per token and layer, bf16 with fused (flash) attention:
# 34 x width (Korthikanti et al. 2022, "Reducing activation recomputation", Table 2, sbh(34)).
ACTIVATION_BYTES_PER_TOKEN_LAYER_WIDTH = 34


@dataclass(frozen=True)
class GpuAssumptions:
    """The figures a step-time estimate assumes where no GPU was measured."""

    gpu: str = "H200"
    # Seconds per kernel in eager PyTorch: the host's Python and dispatcher cost per operator,
    # not the device's launch latency (about 5 us), bounds a small model's step. 10 us is the
    # usual figure for eager PyTorch on a fast host; CUDA graphs would bring it near 3 us.
    launch_s: float = 10e-6
    # Share of the bf16 peak that the model's GEMMs reach: at widths 64-256 and a few thousand
    # rows per member the matmuls are small; 0.25 is a middle guess for batched small GEMMs.
    efficiency: float = 0.25
    peak_tflops: float | None = None  # None: GPU_PEAKS_TFLOPS[gpu]
    memory_gib: float | None = None  # None: GPU_MEMORY_GIB[gpu]
    memory_use: float = 0.85  # share of the device memory an ensemble may fill

    def peak_flops(self) -> float:
        return 1e12 * (self.peak_tflops if self.peak_tflops is not None
                       else GPU_PEAKS_TFLOPS[self.gpu])

    def memory_bytes(self) -> float:
        gib = self.memory_gib if self.memory_gib is not None else GPU_MEMORY_GIB[self.gpu]
        return self.memory_use * gib * 2 ** 30


@dataclass(frozen=True)
class RunShape:
    """One loop run of a programme: an ensemble trained generation after generation."""

    name: str
    model: ModelConfig
    d: int
    k: int
    batch: int
    steps_first: int  # generation 0's optimizer steps
    steps_later: int  # each later generation's
    generations: int  # later generations (G): generation 0 plus G are trained
    members_first: int  # members trained at generation 0 (one per seed where it is shared)
    members_later: int  # members trained at each later generation
    n: int = 10_000  # prompts of S_0; a member labels up to n synthetic prompts a generation
    eval_prompts: int = 2_000  # test prompts per member, every generation
    eval_batch: int = 250
    label_batch: int = 1_000

    def member_steps(self) -> int:
        return (self.members_first * self.steps_first
                + self.generations * self.members_later * self.steps_later)


@dataclass
class KernelCounts:
    """GPU kernels (approximately: backend operators) of one training step and of one forward
    over a batch, each `fixed + per_member x K`: most operators act on every member at once (the
    member axis), a few are issued per member (batch sampling, for instance)."""

    train_fixed: int
    forward_fixed: int
    train_per_member: int = 0
    forward_per_member: int = 0
    source: str = "counted on the CPU (aten operators reaching a kernel, bf16 autocast)"

    def train_step(self, members: int) -> int:
        return self.train_fixed + self.train_per_member * members

    def forward(self, members: int) -> int:
        return self.forward_fixed + self.forward_per_member * members


@dataclass
class RunEstimate:
    shape: RunShape
    chunks: int  # ensembles the run is split into to fit the device memory
    step_s_first: float
    step_s_later: float
    eval_label_s: float  # per generation, all chunks
    seconds: float
    flops: float
    bound: str  # "launch" or "compute" (of a later generation's step)
    step_source: str
    detail: dict = field(default_factory=dict)


def flops_per_member_step(model: ModelConfig, d: int, k: int, batch: int) -> float:
    """Training FLOPs of one member's step: 6 x non-embedding parameters x tokens (forward and
    backward of every weight matmul) plus the attention matmuls (QK^T and AV: 4 T^2 width per
    layer and sequence forward, three times that with backward)."""
    tokens = 2 * k
    params = ICLModel(model, d, k).num_parameters(non_embedding=True)
    attention = 12 * model.n_layer * tokens ** 2 * model.n_embd
    return batch * (6.0 * params * tokens + attention)


def forward_flops_per_prompt(model: ModelConfig, d: int, k: int) -> float:
    """One member's forward over one prompt (a third of a training step's FLOPs)."""
    return flops_per_member_step(model, d, k, 1) / 3


def memory_per_member(model: ModelConfig, d: int, k: int, batch: int) -> float:
    """Bytes one member holds while training: AdamW state and the activations of a batch."""
    params = ICLModel(model, d, k).num_parameters(non_embedding=False)
    activations = (ACTIVATION_BYTES_PER_TOKEN_LAYER_WIDTH * model.n_embd * model.n_layer
                   * batch * 2 * k)
    return ADAM_BYTES_PER_PARAM * params + activations


def step_seconds(members: int, flops_member: float, kernels: int,
                 gpu: GpuAssumptions) -> tuple[float, str]:
    """The modelled time of one step of `members` (launching `kernels`) and which bound sets
    it."""
    launch = gpu.launch_s * kernels
    compute = members * flops_member / (gpu.peak_flops() * gpu.efficiency)
    return (launch, "launch") if launch >= compute else (compute, "compute")


def chunks_for(members: int, bytes_member: float, gpu: GpuAssumptions) -> int:
    """Ensembles a run of `members` is split into so that each fits the device memory."""
    fit = max(1, int(gpu.memory_bytes() // bytes_member))
    return math.ceil(members / fit)


def eval_label_seconds(shape: RunShape, members: int, chunks: int, counts: KernelCounts,
                       gpu: GpuAssumptions) -> float:
    """One generation's evaluation (every member on the test set) and labelling (every member
    labels up to n prompts, a forward per position with the prefix cached), modelled as
    max(launches, forward FLOPs / (peak x efficiency))."""
    fwd = forward_flops_per_prompt(shape.model, shape.d, shape.k)
    per_chunk = math.ceil(members / chunks)
    forward = counts.forward(per_chunk)
    eval_launch = math.ceil(shape.eval_prompts / shape.eval_batch) * forward
    label_launch = math.ceil(shape.n / shape.label_batch) * shape.k * forward
    compute = per_chunk * (shape.eval_prompts + shape.n) * fwd / (gpu.peak_flops()
                                                                   * gpu.efficiency)
    return chunks * max(gpu.launch_s * (eval_launch + label_launch), compute)


def estimate_run(shape: RunShape, counts: KernelCounts, gpu: GpuAssumptions,
                 measured: Callable[[int], float] | None = None) -> RunEstimate:
    """Seconds and FLOPs of one run; `measured(K)`, where given, is a measured step time of an
    ensemble of K members and replaces the model for training steps."""
    flops_member = flops_per_member_step(shape.model, shape.d, shape.k, shape.batch)
    chunks = chunks_for(max(shape.members_first, shape.members_later),
                        memory_per_member(shape.model, shape.d, shape.k, shape.batch), gpu)

    def step(members: int) -> tuple[float, str]:
        per_chunk = math.ceil(members / chunks)
        if measured is not None:
            return chunks * measured(per_chunk), "measured"
        seconds, bound = step_seconds(per_chunk, flops_member, counts.train_step(per_chunk),
                                      gpu)
        return chunks * seconds, bound

    first, _ = step(shape.members_first)
    later, bound = step(shape.members_later)
    evals = [eval_label_seconds(shape, shape.members_first, chunks, counts, gpu)] + [
        eval_label_seconds(shape, shape.members_later, chunks, counts, gpu)] * shape.generations
    seconds = shape.steps_first * first + shape.generations * shape.steps_later * later + sum(evals)
    fwd = forward_flops_per_prompt(shape.model, shape.d, shape.k)
    flops = (shape.member_steps() * flops_member
             + (shape.members_first + shape.generations * shape.members_later)
             * (shape.eval_prompts + shape.n) * fwd)
    return RunEstimate(shape=shape, chunks=chunks, step_s_first=first, step_s_later=later,
                       eval_label_s=evals[-1], seconds=seconds, flops=flops, bound=bound,
                       step_source="measured" if measured is not None else "modelled",
                       detail={"flops_per_member_step": flops_member,
                               "kernels_per_step": counts.train_step(
                                   math.ceil(shape.members_later / chunks)),
                               "kernels_per_forward": counts.forward(
                                   math.ceil(shape.members_later / chunks)),
                               "member_steps": shape.member_steps()})


def estimate_programme(shapes: list[RunShape], counts: dict[str, KernelCounts],
                       gpu: GpuAssumptions,
                       measured: dict[str, Callable[[int], float]] | None = None) -> dict:
    """Every run's estimate and the programme's sum, with the share of peak it implies."""
    runs = [estimate_run(s, counts[s.name], gpu, (measured or {}).get(s.name)) for s in shapes]
    seconds = sum(r.seconds for r in runs)
    flops = sum(r.flops for r in runs)
    return {"runs": [_row(r) for r in runs], "seconds": seconds, "minutes": seconds / 60,
            "flops": flops, "share_of_peak": flops / (seconds * gpu.peak_flops()) if seconds else 0.0,
            "member_steps": sum(s.member_steps() for s in shapes),
            "assumptions": {**dataclasses.asdict(gpu), "peak_flops": gpu.peak_flops(),
                            "memory_bytes": gpu.memory_bytes(),
                            "assumed": ["launch_s", "efficiency", "peak", "memory"]
                            if not measured else ["peak", "memory (the chunking)",
                                                  "launch_s and efficiency (evaluation and "
                                                  "labelling only)"]}}


def _row(r: RunEstimate) -> dict:
    s = r.shape
    return {"name": s.name, "model": dataclasses.asdict(s.model), "d": s.d, "k": s.k,
            "batch": s.batch, "generations": s.generations, "steps_first": s.steps_first,
            "steps_later": s.steps_later, "members_first": s.members_first,
            "members_later": s.members_later, "chunks": r.chunks,
            "step_ms_first": 1e3 * r.step_s_first, "step_ms_later": 1e3 * r.step_s_later,
            "eval_label_s_per_generation": r.eval_label_s, "bound": r.bound,
            "step_source": r.step_source, "seconds": r.seconds, "minutes": r.seconds / 60,
            "flops": r.flops, **r.detail}
