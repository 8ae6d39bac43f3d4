"""The report's tables: runs from several machines side by side (the `CPU ms | GPU ms` layout), and where
each column was measured; the slowest layers of profiled rows side by side."""

from __future__ import annotations

from collections.abc import Sequence

from edgebench.bench.measure.profile import ProfileLine
from edgebench.bench.report import accuracy_cell, fmt
from edgebench.bench.results import ResultRow
from edgebench.reports.runs import Run, rows_frame

ROW_COLUMNS = ["model", "format", "compression", "precision", "batch"]


def side_by_side(runs: Sequence[Run]) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, cells, notes): one line per model x runtime x compression x precision x batch, one p50
    column per target of each run (pivoted with pandas), with size and accuracy; an error or unavailable
    row shows its status and a note with the reason, never a blank. The notes end with each column's
    machine."""
    frame = rows_frame(list(runs))
    rows = [row for run in runs for row in run.rows]
    notes: list[str] = []

    def cell(row: ResultRow, run: str) -> str:
        if row.status == "ok":
            return fmt(row.p50_ms, 3)
        note = f"{row.format} {row.compression} {row.precision} on {row.target} ({run}): {row.error or row.status}"
        if note not in notes:
            notes.append(note)
        return f"{row.status} [{notes.index(note) + 1}]"

    frame["cell"] = [cell(row, run) for row, run in zip(rows, frame["run"], strict=True)]
    frame["size"] = [f"{r.size_mb:.3g}" if r.status == "ok" and r.size_mb is not None else "" for r in rows]
    frame["scored"] = [accuracy_cell(r) if r.status == "ok" and r.accuracy is not None else "" for r in rows]
    frame["column"] = [f"{target}|{run}" for target, run in zip(frame["target"], frame["run"], strict=True)]
    columns = list(dict.fromkeys(frame["column"]))
    grid = frame.pivot_table(index=ROW_COLUMNS, columns="column", values="cell", aggfunc="first", sort=False)
    first = frame.groupby(ROW_COLUMNS, sort=False)[["size", "scored"]].agg(lambda v: next((x for x in v if x), "-"))
    body = []
    for keys in grid.index:
        values = [grid.at[keys, c] if c in grid.columns else None for c in columns]
        body.append([*(str(k) for k in keys), first.at[keys, "size"],
                     *("-" if not isinstance(v, str) else v for v in values), first.at[keys, "scored"]])
    machines = dict(zip(frame["column"], frame["machine"], strict=True))
    headers = ["Model", "Format", "Compression", "Precision", "Batch", "Size (MB)",
               *(f"{c.split('|')[0].upper()} ms [m{i}]" for i, c in enumerate(columns, 1)), "Accuracy %"]
    legend = [f"m{i}: {machines[c]}, run {c.split('|', 1)[1]}" for i, c in enumerate(columns, 1)]
    return headers, body, [*(f"[{i}] {n}" for i, n in enumerate(notes, 1)), *legend]


def environment_lines(run: Run) -> list[str]:
    """What a reader needs to trust a run's numbers: machine, date, commit, threads, timing, key versions."""
    env = run.environment
    packages = env.get("packages") or {}
    key = ", ".join(f"{name} {packages[name]}" for name in ("torch", "onnxruntime", "openvino", "ai-edge-litert",
                                                            "tensorrt", "coremltools") if name in packages)
    timing = env.get("timing") or {}
    return [f"machine: {run.machine}; {env.get('ram_gib', '?')} GiB; {env.get('os', '?')}",
            f"measured {env.get('date', '?')} at commit {str(env.get('git_commit', '?'))[:10]}, "
            f"{env.get('repeats', '?')} rounds a row, mode {env.get('mode', 'latency')}, "
            f"each round at least {timing.get('min_iters', '?')} iterations and {timing.get('min_s', '?')} s",
            f"libraries: {key or 'not recorded'}",
            f"command: {env.get('command', '?')}"]


def layer_key(operator: str) -> str:
    """What matches one layer across runtimes: the exported graph's node name, which ONNX Runtime and OpenVINO
    both keep (OpenVINO appends what it split off: `node_Conv_292/WithoutBiases`)."""
    return operator.split("/")[0]


def layer_block(layer: str) -> str:
    """The PyTorch module a profile line is compared under across runtimes: the parent of the module it names.
    An exported convolution with a folded BatchNorm carries the BatchNorm's path (`features.2.conv.0.1`) where
    eager PyTorch's convolution ran in its sibling (`features.2.conv.0.0`); their parent (`features.2.conv.0`)
    holds both, and the activation after them, in every runtime."""
    return layer.rsplit(".", 1)[0] if "." in layer else layer


def slowest_blocks(rows: Sequence[ResultRow], lines: Sequence[ProfileLine],
                   top: int = 10) -> tuple[list[str], list[list[str]]]:
    """(headers, cells): the slowest module blocks (`layer_block`) of the rows whose profiles name PyTorch
    modules (eager PyTorch by its own modules, ONNX Runtime and OpenVINO by their nodes' source), in ms per
    profiled inference, each cell the sum of what that row ran in the block. It is there to put a row whose
    lines are operator types on modules (eager PyTorch's) beside the others, so it is empty unless such a row and
    a row of another runtime share a block (exported runtimes alone have the table of node names). A runtime that
    fuses an operator into one of another block (OpenVINO a residual addition into the convolution before it)
    moves its time with it: the cells say where each runtime spent it."""
    from edgebench.bench.measure.profile import OUTSIDE

    times: dict[str, dict[str, float]] = {}
    for line in lines:
        if line.operator != OUTSIDE and line.layer:
            block = times.setdefault(layer_block(line.layer), {})
            block[line.key] = block.get(line.key, 0.0) + line.ms
    typed = {line.key for line in lines if line.layer and line.operator == line.kind}  # operator types on modules
    columns = [r for r in rows if r.status == "ok" and any(r.key in found for found in times.values())]
    runtimes = {r.key: r.runtime for r in columns}
    matched = {block: found for block, found in times.items()
               if typed & set(found) and len({runtimes[key] for key in found if key in runtimes}) >= 2}
    if not matched:
        return [], []
    shown = [r for r in columns if any(r.key in found for found in matched.values())]
    order = sorted(matched, key=lambda block: -max(matched[block].values()))[:top]
    headers = ["PyTorch module block"] + [
        f"{r.format} {r.precision}{'' if r.compression == 'none' else ' ' + r.compression} ms" for r in shown]
    return headers, [[block] + [fmt(matched[block].get(r.key), 3) for r in shown] for block in order]


def slowest_layers(rows: Sequence[ResultRow], lines: Sequence[ProfileLine],
                   top: int = 10) -> tuple[list[str], list[list[str]]]:
    """(headers, cells): the slowest layers that two or more profiled rows report under one name, side by side
    in ms per inference; empty where no layer matches (PyTorch's lines are operator types on its modules, not
    exported nodes: they are left out)."""
    from edgebench.bench.measure.profile import OUTSIDE

    columns = [r for r in rows if r.status == "ok" and any(line.key == r.key for line in lines)]
    keys = {r.key for r in columns}
    times: dict[str, dict[str, float]] = {}
    layers: dict[str, str] = {}
    for line in lines:
        if line.operator in (OUTSIDE, line.kind) or line.key not in keys:
            continue  # an operator type (PyTorch's aten::relu_, a node the graph left unnamed) is no layer
        key = layer_key(line.operator)
        times.setdefault(key, {})
        times[key][line.key] = times[key].get(line.key, 0.0) + line.ms
        layers[key] = layers.get(key) or line.layer
    matched = {key: found for key, found in times.items() if len(found) >= 2}
    if not matched:
        return [], []
    shown = [r for r in columns if any(r.key in found for found in matched.values())]
    order = sorted(matched, key=lambda key: -max(matched[key].values()))[:top]
    headers = ["Layer (exported node)", "PyTorch module"] + [
        f"{r.format} {r.precision}{'' if r.compression == 'none' else ' ' + r.compression} ms" for r in shown]
    body = [[key, layers.get(key) or "-"] + [fmt(matched[key].get(r.key), 3) for r in shown] for key in order]
    return headers, body
