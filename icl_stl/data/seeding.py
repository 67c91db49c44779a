"""One seed fixes everything: every random draw comes from its own named `torch.Generator`.

Each purpose (data, initialisation, batch order, synthetic x's, label noise, ...) gets a stream
derived from (seed, purpose, generation, ...) by hashing. Streams never share state, so changing
how many numbers one purpose draws never shifts another. This is what lets the stability probe
run two loops that share every draw except the one replaced prompt.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed determined by `seed` and the sequence of `keys` (stable across runs)."""
    text = "/".join([str(int(seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def make_generator(seed: int, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh generator for the stream named by `keys` under `seed`, on `device`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *keys))
    return gen


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from icl_stl.config import ConfigError

        raise ConfigError("runtime.device must be 'cpu' or 'auto' on this machine (no CUDA GPU), got 'cuda'")
    return torch.device(name)
