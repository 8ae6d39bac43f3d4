"""TFLite integer models: int8 inputs quantized, int8 outputs dequantized, several outputs kept in order.

The model is a real fully-integer TFLite file made with litert-torch's PT2E quantizer (two heads of different
sizes, so a swapped order cannot pass), run by the real TFLite adapter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: E402
from torch import nn  # noqa: E402

from edgebench.bench.measure.fidelity import compare  # noqa: E402
from edgebench.runtimes import RuntimeOptions, get_runtime  # noqa: E402


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.classes = nn.Linear(8, 10)
        self.box = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return self.classes(h), self.box(h)


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    torch.manual_seed(0)
    model, x = TwoHeads().eval(), torch.randn(1, 3, 16, 16)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    for _ in range(16):
        prepared(torch.randn(1, 3, 16, 16))
    quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    path = tmp_path_factory.mktemp("int8") / "model.tflite"
    litert_torch.convert(quantized, (x,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)).export(
        str(path))
    with torch.inference_mode():
        reference = [o.numpy() for o in model(x)]
    return path, x.numpy(), reference


@pytest.fixture(scope="module")
def adapter(int8_model):
    path, _, _ = int8_model
    tflite = get_runtime("tflite")(RuntimeOptions(threads=1))
    tflite.load(path)
    return tflite


def test_the_model_really_has_integer_inputs_and_outputs(adapter):
    assert np.dtype(adapter.input["dtype"]) == np.int8
    assert [np.dtype(o["dtype"]) for o in adapter.outputs] == [np.int8, np.int8]
    assert "int8" in adapter.details()


def test_inputs_are_quantized_with_the_models_scale_and_zero_point(adapter, int8_model):
    _, x, _ = int8_model
    prepared = adapter.prepare(x)
    scale, zero_point = adapter.input["quantization"]
    assert prepared.dtype == np.int8
    np.testing.assert_array_equal(prepared, np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8))


def test_outputs_are_dequantized_in_the_models_order(adapter, int8_model):
    _, x, reference = int8_model
    outputs = adapter.predict(x)
    assert [o.shape for o in outputs] == [(1, 10), (1, 4)]
    assert all(o.dtype == np.float32 for o in outputs)
    fidelity = compare(outputs, reference, "int8")
    assert fidelity.within_tolerance, (fidelity.max_abs_diff, fidelity.cosine)

