"""Command line: ``python -m snnl train ...``, ``python -m snnl sweep ...`` and ``python -m snnl data import ...``.

Examples::

    python -m snnl train --dataset mnist --model cnn --alpha 10 --steps 14000 --seed 0 --out results/paper
    python -m snnl sweep fig7 --profile small --storage sqlite:///sweeps.db --out runs/fig7 --workers 2
    python -m snnl sweep fig7 --profile small --storage sqlite:///sweeps.db --out runs/fig7 --status
    python -m snnl data import --name mnist --source path/to/idx-gz-folder
"""

from __future__ import annotations

import argparse
import sys

from snnl.data import DATASETS, DatasetError, data_root, import_idx
from snnl.extras import MissingExtra
from snnl.losses import DISTANCES
from snnl.models import MODELS
from snnl.checkpointing import CheckpointLocked, Preempted
from snnl.sweeps import EXIT_PREEMPTED, HEARTBEAT_S, SWEEPS
from snnl.train import REGULARIZERS, TrainConfig, TrainingDiverged


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m snnl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model with Eq. 3 and write a results record")
    t.add_argument("--dataset", default="digits", choices=DATASETS)
    t.add_argument("--model", default="cnn", choices=MODELS)
    t.add_argument("--alpha", type=float, default=0.0, help="SNNL weight; > 0 maximises entanglement")
    t.add_argument("--temperature", type=float, default=100.0, help="initial temperature T0")
    t.add_argument("--fixed-temperature", action="store_true", help="do not learn the temperature")
    t.add_argument("--distance", default="euclidean", choices=DISTANCES)
    t.add_argument("--regularizer", default="snnl", choices=REGULARIZERS,
                   help="snnl (Eq. 1), snnl-reference (the authors' formula, with its 1e-5 terms) or triplet")
    t.add_argument("--steps", type=int, default=TrainConfig.steps)  # the paper recipe: TrainConfig's defaults
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    t.add_argument("--lr", type=float, default=TrainConfig.lr)
    t.add_argument("--lr-decay", type=float, default=1.0)
    t.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--n-train", type=int, default=None)
    t.add_argument("--n-test", type=int, default=None)
    t.add_argument("--size", type=int, default=None, help="resize images (32 for the ResNet)")
    t.add_argument("--channels", type=int, default=None, help="replicate channels (3 for the ResNet)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--profile", default="small", choices=("small", "paper"))
    t.add_argument("--experiment", default="train", help="name written in the results record")
    t.add_argument("--out", default=None, help="folder for the results record")
    t.add_argument("--checkpoint-dir", default=None, help="folder for checkpoints (resumes if present)")
    t.add_argument("--no-progress", action="store_true")

    w = sub.add_parser("sweep", help="run (or show) a multi-run experiment with workers sharing one storage")
    w.add_argument("name", help="the sweep: " + ", ".join(SWEEPS))
    w.add_argument("--profile", default="small", help="small or paper (a sweep may have only some)")
    w.add_argument("--storage", default=None,
                   help="SQLAlchemy URL (sqlite:///F.db, postgresql+psycopg://user:pw@host/db) or journal:FILE; "
                        "default: an SQLite file in --out")
    w.add_argument("--out", default=None, help="folder of the records (default results/<profile>/<the sweep's folder>)")
    w.add_argument("--checkpoints", default=None,
                   help="checkpoint folders, one per run (default _build/checkpoints/<name>); "
                        "on a folder all workers reach, a retried run resumes from its checkpoint")
    w.add_argument("--workers", type=int, default=1, help="local worker processes (one math thread each)")
    w.add_argument("--device", default="auto")
    w.add_argument("--heartbeat", type=int, default=HEARTBEAT_S,
                   help="seconds between a worker's heartbeats; a run silent for twice that is retried")
    w.add_argument("--status", action="store_true", help="print done / running / failed / pending per cell and exit")

    d = sub.add_parser("data", help="manage datasets")
    dsub = d.add_subparsers(dest="action", required=True, parser_class=_Parser)
    i = dsub.add_parser("import", help="import a folder of idx (.gz) files into the data root")
    i.add_argument("--name", required=True, choices=("mnist", "fashion-mnist", "notmnist"))
    i.add_argument("--source", required=True)
    i.add_argument("--root", default=None)
    i.add_argument("--no-verify", action="store_true",
                   help="take a custom copy: skip the check against the known digests of the dataset's files")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "data":
            folder = import_idx(args.name, args.source, args.root, verify=not args.no_verify)
            print(f"{args.name}: files in {folder} (data root {data_root(args.root)})")
            return 0
        from snnl.train import TrainConfig, train

        cfg = TrainConfig(dataset=args.dataset, model=args.model, alpha=args.alpha, temperature=args.temperature,
                          learn_temperature=not args.fixed_temperature, distance=args.distance,
                          regularizer=args.regularizer,
                          steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
                          optimizer=args.optimizer, eval_every=args.eval_every, n_train=args.n_train,
                          n_test=args.n_test, size=args.size, channels=args.channels, seed=args.seed,
                          device=args.device, profile=args.profile, experiment=args.experiment)
        res = train(cfg, out_dir=args.out, checkpoint_dir=args.checkpoint_dir, progress=not args.no_progress)
        m = res.metrics
        print(f"test accuracy {m['test_accuracy']:.4f}, test CE {m['test_ce']:.4f}"
              + (f"; record {res.record['path']}" if "path" in res.record else ""))
        return 0
    except Preempted as e:
        print(f"python -m snnl: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except (DatasetError, MissingExtra, ValueError, TypeError, OSError, TrainingDiverged, CheckpointLocked,
            RuntimeError) as e:
        # one line: the messages of these errors say what to change; no traceback
        print(f"python -m snnl: error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        return 1 if isinstance(e, TrainingDiverged) else 2


def _sweep(args) -> int:
    from snnl import sweeps

    out = args.out or sweeps.default_out(args.name, args.profile)
    if args.status:
        sweeps.check(args.name, args.profile)
        storage = args.storage or sweeps.default_storage(out)
        sweeps.open_storage(storage, args.heartbeat)
        print(sweeps.format_status(sweeps.status(args.name, args.profile, storage, out)))
        return 0
    n = sweeps.run_sweep(args.name, args.profile, args.workers, args.storage, out, args.checkpoints, args.device,
                         args.heartbeat)
    print(f"{args.name}: " + (f"{n} run(s) done by this worker; " if args.workers == 1 else "")
          + f"records in {out}; python -m snnl sweep {args.name} --profile {args.profile} --status")
    return 0


if __name__ == "__main__":
    sys.exit(main())
