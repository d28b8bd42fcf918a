"""What the chapters' packages share (nothing here belongs to one chapter):

* :mod:`~snnl.experiments.common.profiles` -- the profile mechanism (``small`` / ``paper``), the
  paper's training recipes (:data:`PAPER_RECIPE`, :data:`RESNET_PAPER`) and the data stand-ins;
* :mod:`~snnl.experiments.common.records` -- opening and finishing results records (the one
  finisher :func:`~snnl.experiments.common.records.finish_run`), finding a run a sweep already has, training with a record;
* :mod:`~snnl.experiments.common.checkpoints` -- finished model checkpoints and their folder names;
* :mod:`~snnl.experiments.common.curves` -- mean training curves over seeds;
* :mod:`~snnl.experiments.common.measures` -- t-SNE and kNN accuracy;
* :mod:`~snnl.experiments.common.tables` -- Markdown tables;
* :mod:`~snnl.experiments.common.rows` -- the reproduction report's vocabulary: statuses and the
  row helpers of every item's ``report_items(records)``;

The names of ``profiles``, ``records``, ``measures`` and ``tables`` are also offered here
(``from snnl.experiments.common import finish_run``).
"""

from snnl.experiments.common.measures import knn_accuracy, tsne
from snnl.experiments.common.profiles import (PAPER_RECIPE, RESNET_PAPER, SUBSTITUTES, config_from_profile, ds_key,
                                              load_or_substitute, profile_values)
from snnl.experiments.common.records import (config_key, find_record, finish_record, finish_run, models_out, start_run,
                                             train_recorded)
from snnl.experiments.common.tables import markdown_table

__all__ = ["PAPER_RECIPE", "RESNET_PAPER", "SUBSTITUTES", "config_from_profile", "config_key", "ds_key", "find_record",
           "finish_record", "finish_run", "knn_accuracy", "load_or_substitute", "markdown_table", "models_out",
           "profile_values", "start_run", "train_recorded", "tsne"]
