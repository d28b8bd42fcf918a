"""Entangled representations under attack and out of distribution (paper Section 5, Apps. G, H).

One module per experiment:

* Figs. 10, 11 (Section 5.2): the gradients a targeted FGSM attack follows, on two models
  (:mod:`snnl.experiments.ood.gradients`);
* Figs. 12, 21 (Section 5.3, App. G): out-of-distribution inputs set apart
  (:mod:`snnl.experiments.ood.outliers`);
* Fig. 22 (App. H): adversarial points in the first hidden layer
  (:mod:`snnl.experiments.ood.hidden`);
* Table 2 (App. E): entanglement of a PGD-trained model (:mod:`snnl.experiments.ood.robustness`).

What they share (the configuration :class:`GeometryConfig` and its profiles, the data, the
trained models reusing finished checkpoints, the figures) is in :mod:`snnl.experiments.ood.base`,
the t-SNE and kNN measurements in :mod:`snnl.experiments.common`. This module runs all four
(:func:`run_all`, the command line ``python -m snnl.experiments.ood``) and names the
functions the book's chapter uses, so that ``from snnl.experiments.ood.geometry import ...`` keeps
working.

Every ``run_*`` function returns plain data (numpy arrays and floats) and, given ``out_dir``,
writes a record with :class:`snnl.results.Run` (embeddings rounded into the record's history).
"""

from __future__ import annotations

import argparse
import json

from snnl.experiments.ood.gradients import (adversarial_gradients, gradient_alignment, plot_gradients,
                                                   run_adversarial_gradients, table_gradients)
from snnl.experiments.common.checkpoints import await_checkpoint, checkpoint_step
from snnl.experiments.common import knn_accuracy, markdown_table, tsne
from snnl.experiments.ood.base import (PROFILES, SYNTHETIC_OOD, GeometryConfig, checkpoint_dir, config_for, load,
                                            model_config, plot_embedding, plot_geometry, trained_model)
from snnl.experiments.ood.hidden import plot_hidden, real_vs_adversarial, run_hidden_adversarial, table_hidden
from snnl.experiments.ood.outliers import ood_scores, plot_ood, run_ood, table_ood
from snnl.experiments.ood.robustness import run_table2, table2_rows, table_table2

__all__ = ["PROFILES", "SYNTHETIC_OOD", "GeometryConfig", "adversarial_gradients", "await_checkpoint", "checkpoint_dir",
           "checkpoint_step", "config_for", "gradient_alignment", "knn_accuracy", "load", "main", "markdown_table",
           "model_config", "ood_scores", "plot_embedding", "plot_geometry", "plot_gradients", "plot_hidden", "plot_ood",
           "real_vs_adversarial", "run_adversarial_gradients", "run_all", "run_hidden_adversarial", "run_ood", "run_table2",
           "table2_rows", "table_gradients", "table_hidden", "table_ood", "table_table2", "trained_model", "tsne"]


def run_all(cfg: GeometryConfig, out_dir=None, parts=("gradients", "ood", "hidden", "table2")) -> dict:
    """Every experiment of this section (models shared through one cache)."""
    runners = {"gradients": run_adversarial_gradients, "ood": run_ood, "hidden": run_hidden_adversarial,
               "table2": run_table2}
    unknown = set(parts) - set(runners)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(runners)}")
    cache: dict = {}
    return {p: runners[p](cfg, out_dir, cache) for p in parts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnl.experiments.ood", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="small", choices=tuple(PROFILES))
    p.add_argument("--parts", nargs="+", default=["gradients", "ood", "hidden", "table2"])
    p.add_argument("--out", default=None, help="folder for the results records")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override config fields (JSON values: n_points=500 seeds=[0,1] target=random)")
    args = p.parse_args(argv)
    over = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            over[key] = json.loads(value)
        except json.JSONDecodeError:
            over[key] = value  # a plain string, e.g. target=random
    try:
        cfg = config_for(args.profile, **over)
    except ValueError as e:
        p.error(str(e))
    for part, res in run_all(cfg, args.out, args.parts).items():
        print(part, res["record"]["metrics"], flush=True)
    return 0
