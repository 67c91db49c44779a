"""What a d = 2 programme's code makes of a programme folder: run as a script with the
scripts/ of one commit or another (tests/system/test_p6_arm.py compares the programme's code
before the arms became per setting with today's on the committed d2 files).

    python d2_plan_probe.py SCRIPTS SOURCE OUT

SOURCE holds runs/ (with runs/programme.json) and parts.json (the programme's state.json, as
docs/results/cpu-v2 commits them). OUT gets a programme folder built from them, each finished
generation marked by its checkpoint's metrics.json (what the programme reads to know its
progress); printed: the resume check, the plan, and what update_blocks adds.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path


def main(scripts: Path, source: Path, out: Path) -> dict:
    sys.path.insert(0, str(scripts))
    programme = importlib.import_module("v2_programme")
    parts = importlib.import_module("v2_parts")
    spec = importlib.util.spec_from_file_location("reproduce_v2", scripts / "reproduce_v2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shutil.copytree(source / "runs", out / "runs")
    shutil.copy2(source / "parts.json", out / "state.json")
    prog = json.loads((out / "runs" / "programme.json").read_text())
    for summary in (out / "runs").rglob("summary.json"):
        name = f"v2-{prog['setting']}-{summary.parent.name}"
        for g in {r["generation"] for r in json.loads(summary.read_text())["generations"]}:
            path = out / "checkpoints" / name / f"gen_{g:03d}" / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
    args = script.parse_args(["--out", str(out), "--setting", prog["setting"]])
    fresh = programme.new_programme(args)
    resumes = {key: json.dumps(programme.comparable(key, prog.get(key), fresh[key]),
                               sort_keys=True) == json.dumps(prog.get(key), sort_keys=True)
               for key in programme.COMPARED}
    state = programme.load_state(out)
    added = programme.update_blocks(prog, state, out)
    return {"resumes": resumes, "design": fresh["design"] == prog["design"],
            "plan": parts.plan_text(prog, out, args).replace(str(out), "<OUT>"),
            "added": added, "blocks": state["blocks"], "spares": state["spares"]}


if __name__ == "__main__":
    print(json.dumps(main(*(Path(a).resolve() for a in sys.argv[1:4]))))
