"""C++ hnswlib (Debian python3-hnswlib) baseline for bench/ann.ts.

Reads float32 matrices written by the TS bench, then answers commands on stdin, one per line,
so the TS side can interleave its runs with ours on a noisy machine:
  build                -> {"seconds": s, "cpu": cpu seconds, "rss": resident bytes the index added}
  search EF OUT_PATH [THREADS]  -> writes int32 labels [queries x k] to OUT_PATH, {"seconds": s, "cpu": cpu seconds}
  truth OUT_PATH       -> exact cosine top-k by brute force (BLAS), int32 labels to OUT_PATH
"""
import json
import resource
import sys
import time

import hnswlib
import numpy as np


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    base_path, queries_path, dims, m, ef_construction, k = sys.argv[1:7]
    dims, m, ef_construction, k = int(dims), int(m), int(ef_construction), int(k)
    base = np.fromfile(base_path, dtype=np.float32).reshape(-1, dims)
    queries = np.fromfile(queries_path, dtype=np.float32).reshape(-1, dims)
    index = None
    print(json.dumps({"ready": True, "hnswlib": getattr(hnswlib, "__version__", "?")}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "build":
            before = rss()
            index = hnswlib.Index(space="cosine", dim=dims)
            cpu = cpu_seconds()
            start = time.perf_counter()
            index.init_index(max_elements=len(base), M=m, ef_construction=ef_construction, random_seed=100)
            # One thread, like the Node builds it is compared with.
            index.add_items(base, np.arange(len(base)), num_threads=1)
            seconds = time.perf_counter() - start
            print(json.dumps({"seconds": seconds, "cpu": cpu_seconds() - cpu, "rss": rss() - before}), flush=True)
        elif cmd[0] == "search":
            index.set_ef(int(cmd[1]))
            cpu = cpu_seconds()
            start = time.perf_counter()
            threads = int(cmd[3]) if len(cmd) > 3 else 1
            # Passes over the queries timed as one (short runs at small ef); the labels of the last.
            for _pass in range(int(cmd[4]) if len(cmd) > 4 else 1):
                labels, _ = index.knn_query(queries, k=k, num_threads=threads)
            seconds = time.perf_counter() - start
            cpu = cpu_seconds() - cpu
            labels.astype(np.int32).tofile(cmd[2])
            print(json.dumps({"seconds": seconds, "cpu": cpu}), flush=True)
        elif cmd[0] == "truth":
            start = time.perf_counter()
            b = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-30)
            q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
            out = np.empty((len(q), k), dtype=np.int32)
            for i in range(0, len(q), 100):
                sims = q[i : i + 100] @ b.T
                top = np.argpartition(-sims, k, axis=1)[:, :k]
                order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
                out[i : i + 100] = np.take_along_axis(top, order, axis=1)
            out.tofile(cmd[1])
            print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
        elif cmd[0] == "quit":
            return


if __name__ == "__main__":
    main()
