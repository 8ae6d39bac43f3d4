"""ExecuTorch's Python runtime in a loop: load the `.pte`'s forward, set XNNPACK's threads, execute, a stopwatch."""

import json
import sys
import time

import numpy as np
import torch
from executorch.extension.pybindings import portable_lib
from executorch.runtime import Runtime

artifact, input_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
portable_lib._unsafe_reset_threadpool(threads)
method = Runtime.get().load_program(artifact).load_method("forward")
x = torch.from_numpy(np.load(input_path))
for _ in range(10):
    method.execute([x])
latencies = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter()
    method.execute([x])
    latencies.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": float(np.median(latencies)) * 1e3, "count": len(latencies)}))
