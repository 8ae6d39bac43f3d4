"""ONNX Runtime's plain Python API in a loop: the session as edgebench creates it, then `run` and a stopwatch."""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

artifact, input_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(artifact, sess_options=options, providers=["CPUExecutionProvider"])
feed = {session.get_inputs()[0].name: np.load(input_path)}
for _ in range(10):
    session.run(None, feed)
latencies = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter()
    session.run(None, feed)
    latencies.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": float(np.median(latencies)) * 1e3, "count": len(latencies)}))
