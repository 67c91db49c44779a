"""What a loop's checkpoint is (loop.json: its settings and members) and the check that a resume
continues the same loops; what each loop's W&B run is configured with.

Members gained a labeller (`MemberSpec.labeller`, members.labellers) after checkpoints were
written without one. A member's entry names its labeller only where it is not the run's own
`loop.labeller` (as `config.EXTENSION_DEFAULTS` leaves settings out): a run with one labeller
lists its members as before and resumes its checkpoints, and a loop beside its oracle control
names the control's.
"""

from __future__ import annotations

from pathlib import Path

from icl_stl.config import ConfigError
from icl_stl.data.prompts import PromptSet
from icl_stl.loop.plan import MemberSpec
from icl_stl.persistence import atomic_write_json, read_json
from icl_stl.persistence.identity import describe_differences

__all__ = ["check_checkpoint_identity", "member_records", "member_settings"]


def member_records(members: list[MemberSpec], s0s: list[PromptSet],
                   run_labeller: str | None = None) -> list[dict]:
    """Each member as loop.json and summary.json list it: its settings and its S_0's
    fingerprint, and its labeller where it is not `run_labeller` (module doc)."""
    out = []
    for member, s0 in zip(members, s0s):
        spec = member.describe()
        if spec["labeller"] is None or spec["labeller"] == run_labeller:
            del spec["labeller"]
        out.append({**spec, "s0": s0.fingerprint()})
    return out


def member_settings(member: MemberSpec) -> dict:
    """A loop's own settings by config path: the top level of its W&B run's config."""
    return {"seed": member.seed, "loop.real_fraction": member.real_fraction,
            "data.n": member.n, "loop.augment": member.augment,
            "loop.labeller": member.labeller}


def check_checkpoint_identity(checkpoint_dir: Path, identity: dict) -> None:
    """Write loop.json for a new checkpoint; for an existing one, refuse other settings or
    other members with a ConfigError that names what differs."""
    path = Path(checkpoint_dir) / "loop.json"
    if not path.exists():
        atomic_write_json(path, identity)
        return
    stored = read_json(path)
    if stored != identity:
        diff = (describe_differences(stored.get("settings"), identity["settings"])
                or "members: other loops in the checkpoint")
        raise ConfigError(
            f"checkpoint directory {checkpoint_dir} holds a loop with other settings "
            f"({diff}); resume with the same settings, or choose another run.name or "
            f"delete it")
