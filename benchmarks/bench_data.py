"""Time loading and preprocessing full MNIST (60000 + 10000 images), stage by stage and end to end.

    MINISGD_DATA=../shared/data python benchmarks/bench_data.py [--root PATH] [--repeats 5]

Stages (each a Markdown table row; median and best of ``--repeats`` runs after one warm-up):
  read      decompress the four .gz files, check IDX headers and SHA-256 sums (minisgd.data.read_mnist)
  scale     uint8 -> float64 in [0, 1], train and test (the fused conversion load_mnist does)
  pool      2x2 average pooling, 28x28 -> 14x14, train and test
  pca-50    fit PCA-50 on the training split (covariance + eigh) and project train and test
  total     load_mnist(root, pca=50): read + scale + PCA-50 end to end (the issue's target: < 5 s)
"""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import _common as C  # noqa: E402

TARGET_TOTAL_S = 5.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="folder containing mnist/ (default: $MINISGD_DATA, ../shared/data)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import numpy as np

    from minisgd.data import avg_pool_images, fit_pca, load_mnist, read_mnist

    root = args.root or os.environ.get("MINISGD_DATA") or os.path.join(os.path.dirname(HERE), "..", "shared", "data")
    arrays, _ = read_mnist(root, download=False)
    tr, te = arrays["train_images"], arrays["test_images"]

    def scale():
        return (np.multiply(tr.reshape(len(tr), -1), 1 / 255, dtype=np.float64),
                np.multiply(te.reshape(len(te), -1), 1 / 255, dtype=np.float64))

    Xtr, Xte = scale()

    def pool():
        return avg_pool_images(Xtr.reshape(-1, 28, 28), 2), avg_pool_images(Xte.reshape(-1, 28, 28), 2)

    def pca50():
        pc = fit_pca(Xtr, 50)
        return pc.transform(Xtr), pc.transform(Xte)

    stages = [
        ("read (gunzip, IDX checks, SHA-256)", lambda: read_mnist(root, download=False)),
        ("scale to [0, 1] (uint8 -> float64)", scale),
        ("pool 2x2 (28x28 -> 14x14)", pool),
        ("PCA-50 (fit on train, project both)", pca50),
        ("total: load_mnist(pca=50)", lambda: load_mnist(root, download=False, pca=50)),
    ]
    rows, total_median = [], None
    for name, fn in stages:
        times = C.timeit(fn, repeats=args.repeats, warmup=1)
        med = statistics.median(times)
        rows.append([name, C.fmt_time(med), C.fmt_time(min(times))])
        total_median = med
    info = C.machine_info(np)
    print(f"MNIST load + preprocess, {info['cpu']}, {info['affinity']} cores, numpy {info['numpy']}, "
          f"{info['blas']}; median and best of {args.repeats}\n")
    print(C.markdown_table(["stage", "median", "best"], rows))
    verdict = "meets" if total_median < TARGET_TOTAL_S else "MISSES"
    print(f"\nend to end {total_median:.2f} s: {verdict} the {TARGET_TOTAL_S:.0f} s target")
    return 0 if total_median < TARGET_TOTAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
