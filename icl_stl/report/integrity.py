"""What the input may hide, found and named before any verdict: copied loops and uneven
generations.

- **Copies.** A member's seed draws its S_0, so two loops with the same S_0 fingerprint (`s0`),
  lambda, n, m and labeller under different seeds are one loop copied, not two replicates
  (`merge_copies`): it counts once (the copy with the most generations, then the smallest seed,
  is kept) and the report warns.
- **Uneven generations.** The loops of a group (configuration, n, m) normally share their
  generations; when one lambda stops early or one seed runs further, the group is named
  (`uneven_groups`) and the rules read the generations every loop of a group reached
  (`groups.shared_generations`).

Both are listed in REPORT.md and in verdicts.json (`warnings`, `uneven_groups`,
`copied_loops`).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from icl_stl.report.gating import describe_loop, loop_key
from icl_stl.report.groups import describe_group, natural_key

log = logging.getLogger(__name__)


def merge_copies(records: list[dict], warn: bool = True) -> tuple[list[dict], list[dict]]:
    """(records with every copied loop counted once, the copies found).

    Each copy found: {"loop": the kept loop, "s0", "seeds" (every seed it was found under),
    "kept_seed", "runs"}. Records without an S_0 fingerprint are never merged."""
    by_loop: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        by_loop[loop_key(r)].append(r)
    same: dict[tuple, list[tuple]] = defaultdict(list)
    for key, recs in by_loop.items():
        fingerprints = {r.get("s0") for r in recs} - {None, ""}
        if len(fingerprints) == 1:
            config, _, lam, n, m, labeller = key
            same[(config, fingerprints.pop(), lam, n, m, labeller)].append(key)
    dropped: set[tuple] = set()
    copies = []
    for (_, s0, *_), keys in sorted(same.items(), key=lambda kv: natural_key(kv[0])):
        if len(keys) < 2:
            continue
        keep = max(keys, key=lambda k: (len(by_loop[k]), -k[1]))
        dropped.update(k for k in keys if k != keep)
        copies.append({"loop": describe_loop(keep), "s0": s0,
                       "seeds": sorted(k[1] for k in keys), "kept_seed": keep[1],
                       "runs": sorted({run for k in keys for r in by_loop[k]
                                       for run in r.get("runs", [r.get("run")]) if run})})
    for line in copy_warnings(copies) if warn else ():
        log.warning("%s", line)
    return [r for r in records if loop_key(r) not in dropped], copies


def copy_warnings(copies: list[dict]) -> list[str]:
    """One line per set of copies of one S_0 under the same seeds (its lambdas, m and labellers
    together): what was counted once, and which seed was kept."""
    by_source: dict[tuple, list[dict]] = defaultdict(list)
    for c in copies:
        by_source[(c["s0"], tuple(c["seeds"]), c["kept_seed"])].append(c)
    lines = []
    for (s0, seeds, kept), found in by_source.items():
        others = ", ".join(str(s) for s in seeds if s != kept)
        lines.append(f"copied loops counted once: {len(found)} loop(s) under seed(s) {others} "
                     f"have the same S_0 (fingerprint {s0}) and settings as under seed {kept} "
                     f"({'; '.join(c['loop'] for c in found)}): copies of one loop are not "
                     f"independent seeds (seed {kept} kept)")
    return lines


def _span(generations: tuple[int, ...]) -> str:
    """"0-6" for a contiguous run of generations, else the list."""
    if generations and list(generations) == list(range(generations[0], generations[-1] + 1)):
        return f"{generations[0]}-{generations[-1]}" if len(generations) > 1 \
            else str(generations[0])
    return ", ".join(map(str, generations))


def uneven_groups(records: list[dict]) -> list[dict]:
    """Groups (configuration, n, m) whose loops do not all have the same generations.

    Each: {"group", "loops", "generations" (the most common set), "shared" (the generations
    every loop has), "differ": [{"loop", "generations"}] for the loops with another set}."""
    loops: dict[tuple, dict[tuple, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        group = (r.get("config", ""), r["n"], r.get("augment") or 0)
        loops[group][loop_key(r)].add(r["generation"])
    out = []
    for (config, n, m), members in sorted(loops.items(), key=lambda kv: natural_key(kv[0])):
        sets = {key: tuple(sorted(gens)) for key, gens in members.items()}
        if len(set(sets.values())) < 2:
            continue
        counts = Counter(sets.values())
        common = max(counts, key=lambda s: (counts[s], len(s), tuple(-g for g in s)))
        shared = sorted(set.intersection(*(set(s) for s in sets.values())))
        differ = [{"loop": describe_loop(key), "generations": _span(gens)}
                  for key, gens in sorted(sets.items(), key=lambda kv: natural_key(kv[0]))
                  if gens != common]
        out.append({"group": describe_group(config, n=n, m=m), "loops": len(sets),
                    "generations": _span(common), "shared": _span(tuple(shared)),
                    "differ": differ})
    return out


def uneven_warning(group: dict) -> str:
    shown = "; ".join(f"{d['loop']}: generations {d['generations']}" for d in group["differ"])
    shared = group["shared"] or "none"
    return (f"uneven generations in group {group['group'] or '(all)'}: {len(group['differ'])} "
            f"of {group['loops']} loops differ from generations {group['generations']} "
            f"({shown}); rules that compare loops read the generations every loop of a group "
            f"reached ({shared})")
