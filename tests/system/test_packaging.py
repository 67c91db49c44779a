"""The package stands on its own: a built wheel carries every module and config and composes them
without the source tree; building it, or the editable install `make install` makes, warns
nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO

# What pip shows of a build backend's Python warnings (setuptools' "Package 'icl_stl.conf.data'
# is absent from the `packages` configuration", "Editable installation."), and setuptools' own.
WARNING = re.compile(r"BuildBackendWarning|SetuptoolsWarning|DeprecationWarning", re.I)


def test_the_editable_install_warns_nothing(tmp_path):
    """What `make install` (pip install -e) asks of setuptools: not one warning."""
    code = ("import sys, warnings, setuptools.build_meta as backend\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    backend.build_editable(sys.argv[1])\n"
            "print('WARNINGS', [f'{w.category.__name__}: {w.message}' for w in caught])\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "WARNINGS []", out.stdout.splitlines()[-1][:2000]
    assert not WARNING.search(out.stderr), out.stderr[-2000:]


def test_a_wheel_installed_elsewhere_has_its_modules_and_configs(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                           check=True, capture_output=True, text=True)
    assert not WARNING.search(build.stdout + build.stderr), (build.stdout + build.stderr)[:2000]
    (wheel,) = (tmp_path / "dist").glob("icl_stl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"icl_stl/conf/{p.relative_to(REPO / 'conf').as_posix()}"
               for p in (REPO / "conf").rglob("*.yaml")}
    assert {"icl_stl/conf/experiment/reproduce/collapse.yaml",
            "icl_stl/conf/experiment/demo/collapse.yaml"} <= configs  # nested groups too
    assert configs <= names, sorted(configs - names)
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "icl_stl").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
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


def _documents() -> list[Path]:
    return [REPO / "README.md", REPO / "BENCHMARKS.md", REPO / "RELIABILITY.md",
            *sorted((REPO / "docs").rglob("*.md"))]


def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (code blocks left out)."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def _broken_links(docs: list[Path]) -> list[str]:
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            destination = (doc.parent / path).resolve() if path else doc
            if not destination.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
                broken.append(f"{doc.name}: {target} (no such heading)")
    return broken


def test_every_relative_link_in_the_documents_resolves():
    """README.md and docs/ link to files that exist, and to headings those files have."""
    assert not _broken_links(_documents())


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n## Two `words`, here\n\n[ok](#two-words-here) [self](page.md#a-page)"
                    " [gone](other.md) [nowhere](#three) [web](https://example.org/x)\n")
    assert _broken_links([page]) == ["page.md: other.md (no such file)",
                                     "page.md: #three (no such heading)"]
