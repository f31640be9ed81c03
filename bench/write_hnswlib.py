"""C++ hnswlib (Debian python3-hnswlib) single-item insert rate, the baseline of bench/write.ts.

  write_hnswlib.py VECTORS.f32 DIMS BASE INSERTS M EF_CONSTRUCTION [ROUNDS]

Builds an index of the first BASE vectors (cosine, both cores), then, ROUNDS times, inserts the next INSERTS
vectors one call per item on one thread, as a live catalogue receives them, and prints one JSON line a round:
{"base": n, "inserts": n, "rate": items/s, "p50_us": ..., "p99_us": ..., "build_seconds": ...}
"""
import json
import sys
import time

import hnswlib
import numpy as np


def main() -> None:
    path, dims, base, inserts, m, ef_construction = sys.argv[1:7]
    rounds = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    dims, base, inserts, m, ef_construction = int(dims), int(base), int(inserts), int(m), int(ef_construction)
    data = np.fromfile(path, dtype=np.float32).reshape(-1, dims)
    if base + rounds * inserts > len(data):
        raise SystemExit(f"need {base + rounds * inserts} vectors, have {len(data)}")
    index = hnswlib.Index(space="cosine", dim=dims)
    index.init_index(max_elements=base + rounds * inserts, M=m, ef_construction=ef_construction, random_seed=100)
    t0 = time.perf_counter()
    index.add_items(data[:base], np.arange(base), num_threads=2)
    build = time.perf_counter() - t0
    for r in range(rounds):
        start = base + r * inserts
        lat = []
        t0 = time.perf_counter()
        for i in range(start, start + inserts):
            s = time.perf_counter()
            index.add_items(data[i : i + 1], np.array([i]), num_threads=1)
            lat.append(time.perf_counter() - s)
        total = time.perf_counter() - t0
        lat.sort()
        print(
            json.dumps(
                {
                    "base": start,
                    "inserts": inserts,
                    "rate": inserts / total,
                    "p50_us": lat[len(lat) // 2] * 1e6,
                    "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
                    "build_seconds": build,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
