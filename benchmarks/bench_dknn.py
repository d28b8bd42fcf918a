"""Deep k-NN speed: snnl.DkNN (exact faiss search) vs scikit-learn brute-force kNN.

The paper's DkNN setting at MNIST scale: 60,000 training points, 4 layers
(widths 256/128/64/10), 1,000 calibration and 10,000 test points, k = 75.
Random Gaussian clusters (10 classes) stand in for the representations. Both
libraries search the same preprocessed (L2-normalised, centred) features;
scikit-learn's time covers the searches only, ours the whole
fit + calibrate + predict. Goal: ours <= 20 s on a 2-core CPU.

    python -m benchmarks.bench_dknn [--n-train 60000 --n-test 10000 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import faiss
import numpy as np
import sklearn
from sklearn.neighbors import NearestNeighbors

from snnl.dknn import DkNN

WIDTHS = (256, 128, 64, 10)


def make_features(n: int, rng: np.random.Generator, centers: list[np.ndarray], y=None):
    """Class-structured features: a class centre per layer plus isotropic noise."""
    classes = len(centers[0])
    y = rng.integers(0, classes, n) if y is None else y
    feats = []
    for c in centers:
        f = rng.standard_normal((n, c.shape[1]), dtype=np.float32)
        f += c[y]
        feats.append(f)
    return feats, y


def main(argv: list[str] | None = None) -> dict:
    """Run once, print the table, return the timings. ``argv=None``: the defaults above."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-cal", type=int, default=1_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--k", type=int, default=75)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args([] if argv is None else argv)

    rng = np.random.default_rng(args.seed)
    # centre spread per layer: lower layers entangled, logits well separated
    centers = [s * rng.standard_normal((10, w), dtype=np.float32) / np.sqrt(w) * 4
               for s, w in zip((0.5, 0.8, 1.2, 2.0), WIDTHS)]
    train, y = make_features(args.n_train, rng, centers)
    cal, y_cal = make_features(args.n_cal, rng, centers)
    test, y_test = make_features(args.n_test, rng, centers)

    t, cpu = {}, {}  # wall-clock and CPU seconds (all threads) per step

    def timed(name, fn):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        t[name], cpu[name] = time.perf_counter() - w0, time.process_time() - c0
        return result

    dknn = timed("ours fit", lambda: DkNN(k=args.k).fit(train, y))
    timed("ours calibrate", lambda: dknn.calibrate(cal, y_cal))
    out = timed("ours predict", lambda: dknn.predict(test))
    ours = t["ours fit"] + t["ours calibrate"] + t["ours predict"]

    # scikit-learn on the same preprocessed features (preprocessing not timed)
    def prep(feats):
        return [np.ascontiguousarray(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-38) - m)
                for f, m in zip(feats, dknn.centers_)]
    tr, ca, te = prep(train), prep(cal), prep(test)
    nns = timed("sklearn fit", lambda: [NearestNeighbors(n_neighbors=args.k, algorithm="brute").fit(f) for f in tr])
    timed("sklearn search calibration", lambda: [nn_.kneighbors(f) for nn_, f in zip(nns, ca)])
    sk_idx = timed("sklearn search test", lambda: np.stack(
        [nn_.kneighbors(f, return_distance=False) for nn_, f in zip(nns, te)], axis=1))
    theirs = t["sklearn fit"] + t["sklearn search calibration"] + t["sklearn search test"]

    same_sets = np.mean([set(a) == set(b) for a, b in
                         zip(out.neighbors_index.reshape(-1, args.k), sk_idx.reshape(-1, args.k))])
    acc = float((out.prediction == y_test).mean())

    print(f"Deep k-NN: {args.n_train} train, {args.n_cal} calibration, {args.n_test} test, "
          f"layers {'/'.join(map(str, WIDTHS))}, k={args.k}; faiss {faiss.__version__}, "
          f"scikit-learn {sklearn.__version__}, {os.cpu_count()} CPUs")
    print(f"{'step':<30}{'wall s':>10}{'CPU s':>10}")
    for name, sec in t.items():
        print(f"{name:<30}{sec:>10.2f}{cpu[name]:>10.2f}")
    print(f"{'ours total (goal <= 20 s)':<30}{ours:>10.2f}{sum(v for k, v in cpu.items() if k.startswith('ours')):>10.2f}")
    print(f"{'sklearn searches total':<30}{theirs:>10.2f}"
          f"{sum(v for k, v in cpu.items() if k.startswith('sklearn')):>10.2f}")
    print(f"speed-up {theirs / ours:.1f}x; identical neighbour sets {same_sets:.4f}; "
          f"DkNN accuracy {acc:.3f}, mean credibility {out.credibility.mean():.3f}")
    return {"seconds": t, "cpu_seconds": cpu, "ours_total": ours, "sklearn_total": theirs,
            "same_neighbour_sets": float(same_sets), "accuracy": acc}


if __name__ == "__main__":
    main(sys.argv[1:])
