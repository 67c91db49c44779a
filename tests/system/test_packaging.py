"""The package stands on its own: a built wheel carries every config and composes them without
the source tree."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from conftest import REPO


def test_the_package_list_names_every_package_directory():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "icl_stl").rglob(
        "__init__.py")}
    assert listed == found | {"icl_stl.conf"}


def test_a_wheel_installed_elsewhere_has_its_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("icl_stl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"icl_stl/conf/{p.relative_to(REPO / 'conf').as_posix()}"
               for p in (REPO / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    # From a directory with no source tree: the installed copy composes the loop's config.
    code = ("from icl_stl.cli.common import CONFIG_DIR\n"
            "from hydra import compose, initialize_config_dir\n"
            "with initialize_config_dir(version_base='1.3', config_dir=CONFIG_DIR):\n"
            "    cfg = compose('loop', overrides=['experiment=generator'])\n"
            "from icl_stl.runs.provenance import code_provenance\n"
            "print(CONFIG_DIR, cfg.loop.labeller, cfg.data.n, code_provenance()['git_commit'])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    config_dir, labeller, n, commit = out.stdout.split()
    assert Path(config_dir) == target / "icl_stl" / "conf"
    assert (labeller, n) == ("model", "10000")
    assert commit == "None"  # an installed wheel has no source tree to read a commit from
    # The console script itself, from outside the repository: Hydra prints the job's config.
    script = target / "bin" / "icl-stl-train"
    out = subprocess.run([str(script), "--cfg", "job", "debug=default"], cwd=tmp_path,
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "task:" in out.stdout and "\n  steps: 20\n" in out.stdout  # debug=default
    assert list(tmp_path.glob("outputs")) == []  # --cfg runs nothing and writes nothing


def test_every_summary_says_which_code_made_it(tmp_path):
    from conftest import compose_loop

    from icl_stl import RESULTS_VERSION
    from icl_stl.cli.loop import loop_from_config

    summary = loop_from_config(compose_loop(tmp_path, "train.steps=2", "eval.n_prompts=8",
                                            "eval.batch_size=8"), tmp_path / "out")
    code = summary["code"]
    assert code["results_version"] == RESULTS_VERSION and code["package_version"]
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert code["git_commit"] == head and isinstance(code["git_dirty"], bool)


def test_no_document_links_outside_the_repository():
    for doc in [REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").rglob("*.md")]:
        text = doc.read_text()
        assert "../shared" not in text, doc
        for target in re.findall(r"\]\(([^)#]+)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).resolve().is_relative_to(REPO), (doc, target)
