"""An AOTInductor package in a loop, as PyTorch documents it: `aoti_load_package`, call it, a stopwatch."""

import json
import sys
import time

import numpy as np
import torch

artifact, input_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(threads)
model = torch._inductor.aoti_load_package(artifact)
x = torch.from_numpy(np.load(input_path))
latencies = []
with torch.inference_mode():
    for _ in range(10):
        model(x)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        model(x)
        latencies.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": float(np.median(latencies)) * 1e3, "count": len(latencies)}))
