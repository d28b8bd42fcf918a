"""The Table 1 recipe study: its declared cells, the run plan, resuming, the statistics table."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from snnl.experiments.regularization import study as st
from snnl.train import activation_scale


def _rec(variant, seed, acc, profile="screen", steps=3000):
    cfg = {**st.run_config(st.PlannedRun(variant, seed, profile)), "steps": steps}
    return {"experiment": st.EXPERIMENT, "profile": profile, "dataset": "x", "seed": seed, "config": cfg,
            "metrics": {"test_accuracy": acc / 100, "train_accuracy": 0.99}, "started_at": f"2026-01-01T00:00:0{seed}"}


def test_cells_pair_an_entangled_variant_with_a_baseline_of_the_same_recipe():
    for c in st.CELLS:
        v, b = st.VARIANTS[c.variant], st.VARIANTS[c.baseline]
        assert v.fields["alpha"] > 0 and b.fields["alpha"] == 0, c.name
        assert v.dataset == b.dataset
        same = {k: x for k, x in v.fields.items() if k not in ("alpha", "learn_temperature", "layers")}
        assert same == {k: x for k, x in b.fields.items() if k in same}, c.name
    zoo = st.VARIANTS["zoo-mnist-fixedT"].config(0, "paper")
    assert (zoo.model, zoo.steps, zoo.batch_size, zoo.lr, zoo.alpha, zoo.temperature, zoo.learn_temperature,
            zoo.regularizer) == ("zoo", 2814, 128, 1e-3, 10.0, 100.0, False, "snnl-reference")
    assert st.VARIANTS["cnn-fmnist-fixedT"].config(0, "screen").steps == st.SCREEN_STEPS


def test_plan_puts_the_authors_recipe_first_and_promotes_cells_that_beat_their_baseline():
    p = st.plan([])
    assert [r.variant for r in p[:2]] == ["zoo-mnist-base", "zoo-mnist-fixedT"]
    assert len(p) == len(set(p))
    assert not any(r.variant.startswith("cnn-fmnist-a1") and r.profile == "paper" for r in p)
    # cnn-fmnist-a1 beats its baseline by 0.5 points at screening: 4 seeds at full length, with its baseline
    recs = [_rec("cnn-fmnist-base", 0, 88.0), _rec("cnn-fmnist-a1", 0, 88.5),
            _rec("cnn-fmnist-a0.1", 0, 88.2)]  # +0.2: not promoted
    assert st.promoted(recs) == ["cnn-fmnist-a1"]
    full = {(r.variant, r.seed) for r in st.plan(recs) if r.profile == "paper"}
    assert {("cnn-fmnist-a1", s) for s in range(4)} | {("cnn-fmnist-base", s) for s in range(4)} <= full
    assert ("cnn-fmnist-a0.1", 0) not in full


def test_study_table_has_cis_and_paired_p_values():
    recs = [_rec("cnn-mnist-base", s, a) for s, a in enumerate((98.0, 98.2, 98.1))] + \
           [_rec("cnn-mnist-a1", s, a) for s, a in enumerate((97.0, 97.3, 97.0))]
    [row] = st.study_table(recs)
    c = row["comparison"]
    assert row["cell"] == "cnn-mnist-a1" and row["n"] == (3, 3) and c.paired_n == 3
    assert c.diff == pytest.approx(-1.0)
    assert c.diff_ci[1] < 0 and st.verdict(row) == "entangling hurts"
    text = st.format_study([row])
    assert "cnn-mnist-a1" in text and "entangling hurts" in text and "[" in text


def test_activation_scale_is_the_median_pairwise_distance_over_t():
    torch.manual_seed(0)
    h = torch.randn(7, 3, 2)
    flat = h.flatten(1)
    d = sorted(float(((flat[i] - flat[j]) ** 2).sum()) for i in range(7) for j in range(i + 1, 7))
    assert activation_scale(h, 4.0) == pytest.approx(d[len(d) // 2] / 4.0)  # 21 pairs: the 11th
    n = torch.nn.functional.normalize(flat, dim=1)
    dc = sorted(float(1 - n[i] @ n[j]) for i in range(7) for j in range(i + 1, 7))
    assert activation_scale(h, 0.5, "cosine") == pytest.approx(dc[len(dc) // 2] / 0.5)


def test_small_study_runs_resumes_and_skips_finished_runs(tmp_path, monkeypatch):
    """The small profile's plan, records and resuming, with shorter runs: 10 steps on 256 training
    and 128 test images (the book's 150 steps on all of digits change nothing checked here, at
    30 CPU-seconds)."""
    tiny = dict(steps=10, eval_every=10, log_every=5, n_train=256, n_test=128)
    for name, v in st.SMALL_VARIANTS.items():
        monkeypatch.setitem(st.SMALL_VARIANTS, name, replace(v, fields={**v.fields, **tiny}))
    out, ck = tmp_path / "records", tmp_path / "ck"
    assert len(st.pending(out, "small")) == 4
    first = st.PlannedRun("zoo-digits-base", 0, "small")
    rec = st.run_one(first, out, ck)
    assert rec["experiment"] == "table1_study" and rec["config"]["variant"] == "zoo-digits-base"
    assert set(rec["history"]["scale"]) == {"conv1", "conv2", "conv3"}
    assert all(math.isfinite(v) and v > 0 for v in rec["history"]["scale"]["conv1"])
    assert rec["config"]["steps"] == 10 and rec["history"]["eval_step"] == [10] and rec["history"]["step"] == [0, 5]
    assert first not in st.pending(out, "small") and len(st.pending(out, "small")) == 3
    assert st.run_study(out, ck, 1, "small", log=lambda *_: None) == 3
    assert st.pending(out, "small") == []
    assert st.run_study(out, ck, 1, "small", log=lambda *_: None) == 0, "a finished study runs nothing"
    assert len(st.load_records(out, st.EXPERIMENT)) == 4, "one record per run"
    [row] = st.study_table(st.load_records(out, st.EXPERIMENT))
    assert row["profile"] == "small" and row["n"] == (2, 2)


def test_run_study_reports_progress_through_log_only(tmp_path, monkeypatch, capsys):
    """The book passes a ``log`` that drops the progress lines (none on the page); the command line
    keeps printing them (``log=print``, the default)."""
    todo = [st.PlannedRun("zoo-digits-base", 0, "small")]
    monkeypatch.setattr(st, "plan", lambda records, profile="paper": list(todo))

    def fake_run(run, out_dir, checkpoint_root=None, device="auto"):
        todo.remove(run)
        return {"metrics": {"test_accuracy": 0.5}}

    monkeypatch.setattr(st, "run_one", fake_run)
    lines = []
    assert st.run_study(tmp_path / "r", tmp_path / "ck", profile="small", log=lines.append) == 1
    assert len(lines) == 1 and "(zoo-digits-base_small_s0) done, value 0.5" in lines[0]
    assert capsys.readouterr().out == ""
    todo.append(st.PlannedRun("zoo-digits-base", 1, "small"))
    assert st.run_study(tmp_path / "r", tmp_path / "ck", profile="small") == 1  # the default prints
    assert "(zoo-digits-base_small_s1) done, value 0.5" in capsys.readouterr().out


def test_mean_history_averages_runs_and_leaves_out_nulls():
    from snnl.experiments.common.curves import mean_history

    h = lambda snnl, ce: {"history": {"step": [0, 50], "eval_step": [50], "snnl": {"c": snnl},
                                      "temperature": {"c": [1.0, 1.0]}, "scale": {"c": [2.0, 4.0]},
                                      "train_ce": [ce], "test_ce": [ce], "train_accuracy": [1.0],
                                      "test_accuracy": [0.5]}}
    m = mean_history([h([1.0, None], 0.2), h([3.0, 2.0], 0.4)])  # a NaN stored as null
    assert m["runs"] == 2 and m["snnl"]["c"] == [2.0, 2.0] and m["train_ce"] == pytest.approx([0.3])
    assert mean_history([]) == {}
