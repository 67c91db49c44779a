"""The report's figures read at a glance: titles in words (no "key=value" settings), the
per-position change since generation 0, and the reference learner's drift over the seeds the
demo runs (their count in the legend)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from test_report import SETTINGS, healthy, loops, write_loop

from icl_stl.report import figures
from icl_stl.report.reference_figure import plot_reference
from icl_stl.report.report import write_report
from icl_stl.report.rules import ReportConfig
from icl_stl.runs import plots

REPO = Path(__file__).resolve().parents[2]
SETTING = re.compile(r"\b[a-z_]+\.[a-z_]+=")  # a raw config string: loop.learner=...
# Config labels of the CPU reproduction (docs/results/cpu/REPORT.md), groups minus n.
CPU = ["loop.filter=confidence, loop.filter_keep=0.5, loop.init=warm_start, "
       "loop.learner=transformer, loop.steps=200, loop.warmup_steps=20, train.batch_size=128",
       "loop.filter=verifier, loop.filter_keep=0.5, loop.init=warm_start, "
       "loop.learner=transformer, loop.steps=200, loop.verifier_n_real=4, "
       "loop.warmup_steps=20, train.batch_size=128",
       "loop.init=from_scratch, loop.learner=gaussian_prior, loop.steps=None, "
       "loop.warmup_steps=None, train.batch_size=128",
       "loop.init=warm_start, loop.learner=transformer, loop.steps=200, "
       "loop.warmup_steps=20, task.n_tasks=2, train.batch_size=128",
       "loop.init=warm_start, loop.learner=transformer, loop.steps=200, "
       "loop.warmup_steps=20, train.batch_size=128",
       "loop.init=warm_start, loop.learner=transformer, loop.steps=200, "
       "loop.warmup_steps=20, train.batch_size=64"]


def _titles(fig) -> list[str]:
    texts = [ax.get_title() for ax in fig.axes]
    return texts + ([fig._suptitle.get_text()] if fig._suptitle else [])


def test_short_names_are_words_that_still_tell_groups_apart():
    names = figures.short_names(CPU)
    assert len(set(names.values())) == len(CPU)
    assert not any(SETTING.search(name) or "=" in name for name in names.values())
    assert names[CPU[2]] == "reference learner, batch size 128"
    assert "init" not in " ".join(names.values())  # implied by the learner: left out
    assert "pool of 2 tasks" in names[CPU[3]]


def test_a_config_value_holding_commas_stays_one_setting():
    assert figures.parse_config("loop.schedule=[0.5, 0.25], train.steps=3") == {
        "loop.schedule": "[0.5, 0.25]", "train.steps": "3"}


def test_group_title_reads_as_words():
    title = figures.group_title("transformer", [0.5, 0.0, 0.5], 10_000).replace("\u00a0", " ")
    assert title == "transformer, λ = 0 vs 0.5, n = 10,000"


def test_the_report_titles_its_figures_in_words(tmp_path, kept):
    write_loop(tmp_path / "runs" / "gpt2", loops(healthy))
    write_loop(tmp_path / "runs" / "lstm", loops(healthy),
               settings={**SETTINGS, "model": {"arch": "lstm"}})
    result = write_report([tmp_path / "runs"], tmp_path / "out")
    assert len(kept) == len(result.figures) >= 4
    for fig in kept:
        assert not any(SETTING.search(t) for t in _titles(fig)), _titles(fig)
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "model.arch=lstm" in text  # the full label stays, in the caption


def test_the_position_figure_shows_the_change_since_generation_0(tmp_path, kept):
    records = [dict(r, test_risk_per_position=[0.5 + 0.1 * r["generation"] * (r["real_fraction"]
                                                                          == 0)] * 5)
               for r in loops(healthy, seeds=(0, 1, 2))]
    figures.positions_figure(records, {}, tmp_path / "p.png", "transformer")
    (ax,) = kept[0].axes
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert list(lines["λ = 0"]) == pytest.approx([0.6] * 5)  # 6 generations x 0.1
    assert list(lines["λ = 0.5"]) == pytest.approx([0.0] * 5)
    assert ax.get_legend().get_title().get_text() == "mean ± sd over 3 seeds"


def _summary(path: Path, ns, seeds, drift=lambda lam, n, g: 2 / n * (g + 1)) -> Path:
    records = [{"seed": s, "real_fraction": lam, "n": n, "augment": 0, "generation": g,
                "test_risk": 0.3 + 0.01 * g * (lam == 0), "ridge_risk": 0.24,
                "prior_mean_err2": drift(lam, n, g) * (0.5 + (s % 3) / 2)}
               for s in seeds for lam in (0.0, 0.5) for n in ns for g in range(4)]
    path.write_text(json.dumps({"generations": records,
                                "settings": {"task": {"d": 2, "w_scale": 1.0}}}))
    return path


def test_the_reference_drift_panel_states_its_seed_count(tmp_path, kept):
    transformer = _summary(tmp_path / "t.json", [10_000], range(2))
    reference = _summary(tmp_path / "r.json", [100, 10_000], range(2))
    drift = _summary(tmp_path / "d.json", [100], range(150))
    plot_reference(transformer, reference, tmp_path / "ref.png", drift)
    right = kept[0].axes[1]
    legend = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("150 seeds" in t and "95% t-interval" in t for t in legend), legend
    assert "150 seeds" in right.get_title()


def test_make_demo_draws_the_drift_over_at_least_100_seeds():
    """scripts/demo.py runs demo/reference_drift and hands it to the reference figure."""
    preset = yaml.safe_load((REPO / "conf" / "experiment" / "demo" /
                             "reference_drift.yaml").read_text())
    assert len(set(preset["members"]["seeds"])) >= 100
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert ("reference_drift", "loop", "demo/reference_drift") in [
        part[:3] for part in demo.FIGURE_PARTS]


def test_every_figure_of_the_committed_reproduction_is_titled_in_words(tmp_path, monkeypatch):
    """Over the CPU reproduction's own runs: risk, positions, stability, decay, augmentation,
    filters and schedules figures alike (titles read as each figure closes)."""
    titles, close = [], plots.plt.close

    def read_and_close(fig):
        titles.append(_titles(fig))
        close(fig)

    monkeypatch.setattr(plots.plt, "close", read_and_close)
    # the exploratory reproduction is judged, and drawn, by the version-1 rules it was made for
    result = write_report([REPO / "docs" / "results" / "cpu" / "runs"], tmp_path / "out",
                          ReportConfig(rules="v1"))
    stems = {Path(f).stem.rsplit("_", 1)[0] for f in result.figures}
    assert {"risk", "stability", "decay", "augmentation", "filters", "schedules"} <= stems
    assert len(titles) >= len(result.figures)
    for texts in titles:
        assert not any(SETTING.search(t) for t in texts), texts
