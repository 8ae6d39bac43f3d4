"""LiteRT's Interpreter in a loop: set the input, invoke, and a stopwatch (float models only)."""

import json
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

artifact, input_path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
interpreter = Interpreter(model_path=artifact, num_threads=threads)
interpreter.allocate_tensors()
index = interpreter.get_input_details()[0]["index"]
x = np.load(input_path)
for _ in range(10):
    interpreter.set_tensor(index, x)
    interpreter.invoke()
latencies = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    latencies.append(time.perf_counter() - t0)
print(json.dumps({"median_ms": float(np.median(latencies)) * 1e3, "count": len(latencies)}))
