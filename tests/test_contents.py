"""What an artifact holds, checked against its label in every run: integer weights in int8 files, N values per
clustered layer, the file's own packed size (synthetic tensors; the real files are read in test_accuracy)."""

from __future__ import annotations

import numpy as np
import pytest

from edgebench.bench.measure.contents import Contents, check, clusters_of, layer_macs, packed_file_mb, read
from edgebench.bench.results import ResultRow
from edgebench.bench.runner import record_contents

rng = np.random.default_rng(0)
CONV = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
FC = rng.standard_normal((10, 32)).astype(np.float32)
BIAS_LIKE = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)  # broadcast bias or scale: not a weight


def clustered(array: np.ndarray, n: int) -> np.ndarray:
    return np.linspace(-1, 1, n, dtype=array.dtype)[np.arange(array.size) % n].reshape(array.shape)


def test_weights_are_tensors_with_two_real_dimensions_and_their_integer_share_is_counted():
    contents = read([CONV, FC, BIAS_LIKE])
    assert contents.distinct == (288, 320) and contents.integer_share == 0.0
    mixed = read([CONV.astype(np.int8), FC])
    assert mixed.integer_share == pytest.approx(288 / 608)
    assert check(mixed, "int8", "none") == (False, "47% of weight elements stored as integers")
    assert check(read([CONV.astype(np.int8), FC.astype(np.uint8)]), "int8", "none")[0] is True
    assert check(read([CONV, FC]), "fp32", "none") == (None, "")  # nothing to check


@pytest.mark.parametrize(("spec", "values", "ok"), [
    ("cluster:16", (16, 16), True), ("cluster:16", (16, 17), False), ("cluster:16@last1", (300, 16), True),
    ("prune-unstructured:0.5+cluster:4", (4, 4), True), ("cluster:4@last2", (300, 4), False)])
def test_a_clustered_file_must_hold_at_most_n_values_in_as_many_layers_as_its_scope(spec, values, ok):
    contents = read([clustered(CONV, values[0]) if values[0] < 288 else CONV, clustered(FC, values[1])])
    held, note = check(contents, "fp32", spec)
    assert held is ok and "distinct values:" in note


def test_packing_shrinks_only_tensors_with_few_values_and_the_row_gets_its_own_files_figure():
    dense, coded = read([CONV]), read([clustered(CONV, 4)])
    assert dense.packed_bytes == dense.stored_bytes == CONV.nbytes
    assert coded.packed_bytes == (288 * 2 + 4 * 32) // 8  # 2-bit indices and 4 fp32 values
    assert packed_file_mb(coded, 5000) == pytest.approx((5000 - CONV.nbytes + coded.packed_bytes) / 1e6)
    assert clusters_of("prune-channels:0.5+cluster:32@last3") == (32, 3) and clusters_of("none") is None
    row = ResultRow(model="m", weights="w", compression="cluster:4", runtime="onnxruntime", format="ONNX Runtime",
                    precision="fp32", target="cpu", device="cpu", batch=1, threads=1, status="ok")
    record_contents(row, Contents(**{k: list(v) if isinstance(v, tuple) else v
                                     for k, v in coded.__dict__.items()}), 5000)
    assert row.packed_mb == pytest.approx(packed_file_mb(coded, 5000)) and row.contents_ok is True
    assert "1 of 1 weight tensors hold <= 4 values" in row.details
    unread = ResultRow(**{**row.__dict__, "packed_mb": None, "contents_ok": None, "details": "", "format": "CoreML"})
    record_contents(unread, None, 5000)
    assert unread.packed_mb is None and unread.details == "CoreML files are not read back here: contents unchecked"


def test_the_share_of_macs_weighs_each_integer_tensor_by_the_work_its_layer_does_in_any_stored_layout():
    import torch
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))
    layers = layer_macs(net, torch.zeros(1, 4, 6, 6))
    conv_macs, fc_macs = 8 * 4 * 9 * 36, 10 * 288
    assert layers == {(3, 3, 4, 8): (conv_macs, 1), (10, 288): (fc_macs, 1)}
    conv = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((10, 288)).astype(np.float32)
    # the convolution stored as integers in TFLite's OHWI layout, the linear layer as float: the few weights of
    # the convolution do most of the work, so the MAC share is far above the element share
    mixed = read([conv.transpose(0, 2, 3, 1).astype(np.int8), fc], layers)
    assert mixed.integer_share == pytest.approx(288 / (288 + 2880))
    assert mixed.integer_mac_share == pytest.approx(conv_macs / (conv_macs + fc_macs))
    assert check(mixed, "int8", "none") == (False, "9% of weight elements (78% of MACs) stored as integers")
    # the reverse: most weights integer but the convolution (most MACs) float is not an int8 file either
    reverse = read([conv, fc.astype(np.int8)], layers)
    assert reverse.integer_share > 0.9 and check(reverse, "int8", "none")[0] is False
    # a file whose tensors match too little of the model gives no MAC share rather than a wrong one
    assert read([fc.astype(np.int8)], layers).integer_mac_share is None
    assert read([conv, fc]).integer_mac_share is None  # no model to weigh by
