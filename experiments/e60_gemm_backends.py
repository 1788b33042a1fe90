"""E60 side probe: the fp32 matmuls of SmolLM2-135M's shapes through torch's BLAS (MKL in the CPU wheel) and
through oneDNN (`torch.utils.mkldnn.to_mkldnn` linear layers), with and without converting the activations to
oneDNN's layout and back, as a model whose other layers need dense tensors would have to. No model is loaded.

    python experiments/e60_gemm_backends.py --threads 2
"""

from __future__ import annotations

import argparse
import time

SHAPES = ((512, 576, 1536), (512, 1536, 576), (512, 576, 49152))  # rows x in x out: MLP up, MLP down, output layer


def seconds(f, x, n: int = 10) -> float:
    """Mean seconds of `f(x)` after one warm-up call."""
    f(x)
    t0 = time.perf_counter()
    for _ in range(n):
        f(x)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    from torch.utils import mkldnn

    torch.set_num_threads(args.threads)
    for m, k, n in SHAPES:
        x, linear = torch.randn(m, k), torch.nn.Linear(k, n, bias=False).eval()
        with torch.inference_mode():
            onednn, xm = mkldnn.to_mkldnn(torch.nn.Sequential(linear)), x.to_mkldnn()
            times = (seconds(linear, x), seconds(onednn, xm),
                     seconds(lambda dense, f=onednn: f(dense.to_mkldnn()).to_dense(), x))
        gflop = 2 * m * k * n / 1e9
        print(f"{m}x{k}x{n}: BLAS {gflop / times[0]:.0f} GFLOP/s, oneDNN {gflop / times[1]:.0f}, "
              f"oneDNN with layout conversions {gflop / times[2]:.0f}", flush=True)


if __name__ == "__main__":
    main()
