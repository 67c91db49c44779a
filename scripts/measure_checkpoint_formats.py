"""Time and size of a typical training checkpoint: the project's format vs safetensors.

The state is what `icl_stl.training.engine` saves for a 64-member ensemble of the `small` model
(6 layers, 4 heads, width 128) after one AdamW step: weights, optimizer moments, per-member
generator states, counters and the run's identity. Two ways of storing it are compared:

- torch: `icl_stl.persistence.save_state` / `load_state` (torch.save, checked by reloading
  with weights_only=True before writing, SHA-256 header; loaded with weights_only=True);
- safetensors: the same checks except the reload; the tensors flattened to `a/b/c` names in a .safetensors file, everything else
  (optimizer hyperparameters, step, history, identity) as JSON in its metadata, the same
  SHA-256 header, written with the same atomic write.

Usage: python scripts/measure_checkpoint_formats.py [--members 64] [--repeats 5]
Prints one JSON object (median seconds, bytes). Writes only under a temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from icl_stl.config import ModelConfig
from icl_stl.models import build_ensemble
from icl_stl.persistence import atomic_write_bytes, load_state, save_state
from icl_stl.training.optim import configure_optimizer

MODELS = {"small": ModelConfig(n_layer=6, n_head=4, n_embd=128),  # conf/model/small.yaml
          "tiny": ModelConfig(n_layer=3, n_head=4, n_embd=64)}  # conf/model/tiny.yaml


def typical_state(members: int, model_name: str) -> dict:
    gens = [torch.Generator().manual_seed(i) for i in range(members)]
    model = build_ensemble(MODELS[model_name], 5, 41, gens)
    opt = configure_optimizer(model.named_parameters(), lr=1e-4, weight_decay=0.0,
                              betas=(0.9, 0.999), member_axis=model.member_axis)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "generators": [g.get_state() for g in gens], "step": 1000, "bad_steps": 0,
            "history": [{"step": s, "loss": 0.5} for s in range(0, 1000, 100)],
            "identity": {"task": {"d": 5, "k": 41}, "model": {"n_layer": 6}, "seed": 0},
            "window_loss": torch.zeros(members), "window_steps": 0}


def _flatten(obj, prefix: str, tensors: dict):
    """Tensors to `tensors` under path names; returns `obj` with each tensor replaced by None."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.contiguous()
        return None
    if isinstance(obj, dict):
        # JSON keys are strings: optimizer state is keyed by int, so keep the key's type.
        return {"dict": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"list": [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]}
    return {"value": obj}


def _unflatten(tree, prefix: str, tensors: dict):
    if tree is None:
        return tensors[prefix]
    if "dict" in tree:
        return {k: _unflatten(v, f"{prefix}/{k}", tensors) for k, v in tree["dict"]}
    if "list" in tree:
        return [_unflatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(tree["list"])]
    return tree["value"]


def to_safetensors(state: dict) -> bytes:
    tensors: dict = {}
    tree = _flatten(state, "s", tensors)
    return st_save(tensors, metadata={"tree": json.dumps(tree)})


def from_safetensors(payload: bytes) -> dict:
    # safetensors' Python load() returns only tensors; the metadata is read from its header.
    n = int.from_bytes(payload[:8], "little")
    tree = json.loads(json.loads(payload[8:8 + n])["__metadata__"]["tree"])
    return _unflatten(tree, "s", st_load(payload))


def to_torch(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def from_torch(payload: bytes) -> dict:
    return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")


def save_safetensors(path: Path, state: dict) -> None:
    payload = to_safetensors(state)
    digest = hashlib.sha256(payload).hexdigest().encode()
    atomic_write_bytes(path, (b"ICLSTS1\n" + digest + b"\n", payload))


def load_safetensors(path: Path) -> dict:
    blob = path.read_bytes()
    header_end = blob.index(b"\n", 8) + 1
    payload = memoryview(blob)[header_end:]
    assert hashlib.sha256(payload).hexdigest().encode() == blob[8:header_end - 1]
    return from_safetensors(bytes(payload))


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--model", choices=sorted(MODELS), default="small")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = typical_state(args.members, args.model)
    n_tensor_bytes = sum(t.numel() * t.element_size()
                         for t in _collect_tensors(state))
    result = {"model": args.model, "members": args.members, "tensor_bytes": n_tensor_bytes}
    # In memory: the formats alone, without checksum, verification or disk.
    for name, encode, decode in (("torch", to_torch, from_torch),
                                 ("safetensors", to_safetensors, from_safetensors)):
        payload = encode(state)
        assert _equal(decode(payload), state), f"{name} does not round-trip the state"
        result[f"{name}_in_memory"] = {
            "encode_s": round(_median_time(lambda f=encode: f(state), args.repeats), 4),
            "decode_s": round(_median_time(lambda f=decode, b=payload: f(b), args.repeats), 4)}
        del payload
    # To disk, as a checkpoint: checksum, atomic fsynced write (torch: also the reload check).
    with tempfile.TemporaryDirectory() as tmp:
        for name, save, load in (("torch", save_state, load_state),
                                 ("safetensors", save_safetensors, load_safetensors)):
            path = Path(tmp) / f"{name}.ckpt"
            save(path, state)
            assert _equal(load(path), state), f"{name} does not round-trip the state"
            save_s = _median_time(lambda s=save, p=path: s(p, state), args.repeats)
            load_s = _median_time(lambda f=load, p=path: f(p), args.repeats)
            result[name] = {"bytes": path.stat().st_size, "save_s": round(save_s, 4),
                            "load_s": round(load_s, 4)}
    print(json.dumps(result, indent=2))


def _collect_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _collect_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _collect_tensors(v)


if __name__ == "__main__":
    main()
