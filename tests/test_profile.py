"""Per-operator profiles: one format from every runtime's own profiler, checked on a network whose costs are known."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from edgebench.bench.measure.profile import (
    OUTSIDE,
    OpTime,
    ProfiledIteration,
    categorise,
    kernel_precision,
    operators_text,
    precision_of_dtype,
    summarise,
)
from edgebench.runtimes import RuntimeOptions, get_runtime

from cuda_marks import cuda
from tests_paths import ASSETS, TINY_MODEL

BIG_CONV = f"{ASSETS / 'one_big_conv.py'}:build"


@pytest.mark.parametrize(("kind", "category"), [
    ("Conv", "convolution"), ("QLinearConv", "convolution"), ("aten::mkldnn_convolution", "convolution"),
    ("mkldnn::_convolution_pointwise", "convolution"), ("onednn::qconv2d_pointwise", "convolution"),
    ("aten::conv_transpose2d", "convolution"), ("Convolution", "convolution"),
    ("Convert", "reshape/copy"), ("Reorder", "reshape/copy"), ("ReorderOutput", "reshape/copy"),
    ("aten::addmm", "matrix multiply"), ("QGemm", "matrix multiply"), ("FullyConnected", "matrix multiply"),
    ("QLinearMatMul", "matrix multiply"), ("QLinearAdd", "element-wise"), ("Add", "element-wise"),
    ("Subgraph", "element-wise"), ("MaxPool", "pooling"), ("ReduceMean", "pooling"),
    ("aten::max_pool2d_with_indices", "pooling"), ("aten::native_batch_norm", "normalisation"),
    ("aten::relu_", "activation"), ("aten::clamp_min_", "activation"), ("Sigmoid", "activation"),
    ("QuantizeLinear", "quantize/dequantize"), ("DequantizeLinear", "quantize/dequantize"),
    ("aten::quantize_per_tensor", "quantize/dequantize"), ("FullyConnectedQuantizedLegacy", "matrix multiply"),
    ("FakeQuantize", "quantize/dequantize"), ("Reshape", "reshape/copy"), ("aten::to_mkldnn", "reshape/copy"),
    ("Transpose", "reshape/copy"), ("TorchDynamo Cache Lookup", "other"), ("forward", "other"),
    ("Fully Connected", "matrix multiply"), ("Max Pooling", "pooling"), ("Mean", "pooling"),
    ("Static Reshape", "reshape/copy"), ("Clamp", "activation"),
    # Inductor's generated kernels: a product in the name is an extern call's epilogue, unless a template's.
    ("cpp_fused_addmm_mean_view_2", "pooling"), ("cpp_fused_relu_0", "activation"),
    ("graph_0_cpp_fused_convolution_relu_0", "activation"), ("triton_poi_fused_addmm_0", "other"),
    ("triton_poi_fused__native_batch_norm_legit_no_training_convolution_1", "normalisation"),
    ("triton_tem_fused_addmm_0", "matrix multiply"), ("cpp_fused_quantize_per_tensor_1", "quantize/dequantize"),
    # TensorRT's engine inspector: its layer types, and a word matched only whole.
    ("PointWise", "element-wise"), ("ElementWise", "element-wise"), ("Scale", "element-wise"),
    ("Reformat", "reshape/copy"), ("Reformat (QDQ)", "quantize/dequantize"), ("Shuffle", "reshape/copy"),
    ("MatrixMultiply", "matrix multiply"), ("Activation", "activation"), ("Quantize", "quantize/dequantize"),
    ("Reduce", "other"), ("aten::_scaled_dot_product_flash_attention", "other"),
])
def test_operator_types_fall_in_their_category(kind, category):
    assert categorise(kind) == category


def test_a_profile_takes_medians_per_inference_and_puts_the_rest_outside_operators():
    conv = OpTime("conv", "Conv", "fp32", 6.0)
    relu = OpTime("relu", "Relu", "fp32", 1.0)
    iterations = [ProfiledIteration(10.0, (conv, relu, relu)),  # relu twice: one line, summed, 2 calls
                  ProfiledIteration(11.0, (OpTime("conv", "Conv", "fp32", 7.0), relu, relu)),
                  ProfiledIteration(30.0, (OpTime("conv", "Conv", "fp32", 25.0), relu, relu))]  # a slow one
    profile = summarise(iterations, key="k", runtime="r", precision="fp32")
    lines = {line.operator: line for line in profile.lines}
    assert lines["conv"].ms == 7.0 and lines["relu"].ms == 2.0 and lines["relu"].calls == 2
    assert profile.wall_ms == 11.0
    assert lines[OUTSIDE].ms == pytest.approx(2.0)  # the median inference less its operators' medians
    assert sum(line.share for line in profile.lines) == pytest.approx(1.0)
    assert [line.operator for line in profile.lines] == ["conv", "relu", OUTSIDE]
    assert profile.top(1)[0].category == "convolution"


def test_integer_coverage_counts_integer_arithmetic_not_conversions():
    ops = (OpTime("c1", "QLinearConv", "int8", 6.0), OpTime("q", "QuantizeLinear", "fp32", 1.0),
           OpTime("dq", "DequantizeLinear", "int8", 1.0), OpTime("gap", "ReduceMean", "fp32", 2.0))
    profile = summarise([ProfiledIteration(10.0, ops)])
    assert profile.integer_share() == pytest.approx(0.6)
    assert [line.operator for line in profile.float_lines()] == ["gap", "q", "dq"]


@pytest.mark.parametrize(("text", "precision"), [
    ("brgconv_avx512_amx_I8", "int8"), ("jit_uni_U8", "int8"), ("brgconv_avx512_amx_bf16", "bf16"),
    ("jit_avx512_f32", "fp32"), ("ref_any_FP32", "fp32"), ("jit_avx512_f16", "fp16"), ("undef", ""),
])
def test_openvino_kernel_names_give_their_precision(text, precision):
    assert kernel_precision(text) == precision


@pytest.mark.parametrize(("dtype", "precision"), [
    ("float", "fp32"), ("uint8", "int8"), ("int8", "int8"), ("float16", "fp16"), ("bfloat16", "bf16"), ("int64", ""),
])
def test_tensor_types_give_their_precision(dtype, precision):
    assert precision_of_dtype(dtype) == precision


def test_onnx_runtime_events_are_grouped_by_run_and_named_as_the_exported_graph_names_them():
    from edgebench.runtimes._onnx import GraphNames, ort_profile_iterations

    def node(name, op, ts, dur, dtype="float"):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": op, "input_type_shape": [{dtype: [1, 3]}]}}

    # x -> node_Conv_3 -> getitem -> node_relu_1 -> relu_1 -> node_Conv_5 -> getitem_2 -> node_relu_2 -> relu_2
    names = GraphNames(layers={"node_Conv_3": "layer1.bn1", "node_relu_1": "layer1.relu", "node_Conv_5": "layer2.bn1",
                               "node_relu_2": "layer2.relu"},
                       op_types={"node_Conv_3": "Conv", "node_relu_1": "Relu", "node_Conv_5": "Conv",
                                 "node_relu_2": "Relu"},
                       producers={"getitem": "node_Conv_3", "relu_1": "node_relu_1", "getitem_2": "node_Conv_5",
                                  "relu_2": "node_relu_2"},
                       first_inputs={"node_Conv_3": "x", "node_relu_1": "getitem", "node_Conv_5": "relu_1",
                                     "node_relu_2": "getitem_2"})
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},  # warm-up, left out
              node("warm", "Conv", 10, 50),
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
              node("node_Conv_3_token_1", "QLinearConv", 210, 60, "uint8"),  # a Q/DQ group fused into QLinearConv
              node("relu_2_nchwc", "Conv", 280, 10),  # Conv + Relu fused, named after the Relu's output
              node("getitem_9", "Transpose", 291, 1),  # a value the graph does not have: its name as it is
              {"cat": "Node", "name": "relu_2_nchwc_fence_before", "ts": 279, "dur": 0}]
    profiled = ort_profile_iterations(events, [0.1, 0.1], 1, names)
    assert len(profiled) == 1
    ops = {op.name: op for op in profiled[0].ops}
    assert set(ops) == {"node_Conv_3", "node_Conv_5", "getitem_9"}
    assert ops["node_Conv_3"].precision == "int8" and ops["node_Conv_3"].ms == pytest.approx(0.06)
    assert ops["node_Conv_3"].layer == "layer1.bn1" and ops["node_Conv_5"].layer == "layer2.bn1"
    assert ops["node_Conv_5"].precision == "fp32" and ops["getitem_9"].layer == ""


def test_tensorrt_layers_are_read_with_their_nodes_modules_precisions_and_multiply_adds_once(tmp_path):
    """TensorRT's layer reports joined to its engine inspector's layers (written here in the inspector's JSON
    format, as NVIDIA's engine explorer reads it: no TensorRT on this machine) and to the big-conv network's real
    ONNX graph, as the export notes it beside the engine."""
    import json

    from edgebench.models import load_model
    from edgebench.runtimes._onnx import GraphNames, export_onnx
    from edgebench.runtimes.tensorrt_engine import engine_iteration, engine_layers

    model = load_model(BIG_CONV)
    GraphNames.read(export_onnx(model.module, model.example, tmp_path / "m.onnx")).write(tmp_path / "graph.json")
    names = GraphNames.load(tmp_path / "graph.json")
    assert names.op_types["node_conv2d_1"] == "Conv" and names.layers["node_conv2d_1"] == "2"

    def onnx(*nodes):
        return "\x1e".join(f"[ONNX Layer: {n}]" for n in nodes)

    def layer(name, kind, formats, tactic="", metadata="", **extra):
        return {"Name": name, "LayerType": extra.pop("layer_type", kind), "ParameterType": kind, "Metadata": metadata,
                "Inputs": [{"Name": "x", "Dimensions": [1, 8, 96, 96], "Format/Datatype": f} for f in formats],
                "TacticName": tactic, **extra}

    dominant = "node_conv2d_1 + node_relu_1"
    info = {"Layers": [
        layer("Reformatting CopyNode for Input Tensor 0 to node_conv2d + node_relu", "Reformat",
              ["Row major linear FP32"]),
        layer("node_conv2d + node_relu", "Convolution", ["Row major linear FP32"],  # no metadata: read from its name
              "sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nhwc"),
        layer("input quantize", "Reformat", ["Channel major FP32 format"], Origin="QDQ"),
        layer(dominant, "Convolution", ["Thirty-two wide channel vectorized row major Int8 format"],
              "sm90_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32", onnx("node_conv2d_1", "node_relu_1")),
        layer("again", "Convolution", ["N/A due to dynamic shapes"], "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16",
              onnx("node_conv2d_1")),  # the same convolution named twice: its multiply-adds once
        layer("node_mean", "Reduce", ["Half(64,1:8,...)"], "", onnx("node_mean")),
        {"Name": "{ForeignNode[node_view...node_linear]}", "LayerType": "Myelin",
         "Metadata": onnx("node_view", "node_linear"), "Inputs": [{"Format/Datatype": "Float"}]},
    ]}
    layers = engine_layers(json.dumps(info))
    reported = [(name, ms) for name, ms in zip(layers, [0.01, 0.02, 0.005, 0.5, 0.1, 0.01, 0.03], strict=True)]
    ops = {op.name: op for op in engine_iteration(0.8, reported, layers, names, "int8").ops}
    assert [op.name for op in engine_iteration(0.8, reported, layers, names, "int8").ops] == list(layers)
    summary = {name: (categorise(op.kind), op.precision, op.layer, op.macs) for name, op in ops.items()}
    assert summary == {
        "Reformatting CopyNode for Input Tensor 0 to node_conv2d + node_relu": ("reshape/copy", "fp32", "", 0.0),
        "node_conv2d + node_relu": ("convolution", "tf32", "0", 221184.0),  # fp32 in, a TF32 tactic
        "input quantize": ("quantize/dequantize", "fp32", "", 0.0),
        dominant: ("convolution", "int8", "2", 96 * 96 * 64 * 8 * 7 * 7),
        "again": ("convolution", "fp16", "2", 0.0),  # no format: the tactic's name says
        "node_mean": ("pooling", "fp16", "4", 0.0),  # `Reduce (ReduceMean)`
        "{ForeignNode[node_view...node_linear]}": ("matrix multiply", "fp32", "6", 640.0),  # `Myelin (Gemm)`
    }
    assert ops[dominant].kernel.startswith("sm90_xmma_fprop_implicit_gemm_interleaved_i8i8")
    assert ops["node_mean"].kind == "Reduce (ReduceMean)"
    # An engine built with the default verbosity keeps layer names only: nothing to read precisions from.
    assert engine_layers(json.dumps({"Layers": ["node_conv2d + node_relu"], "Bindings": ["x"]})) == {}


def _loaded(name: str, precision: str, tmp_path, model_ref: str = BIG_CONV, calibration: np.ndarray | None = None,
            target: str = "cpu"):
    from edgebench.models import load_model

    cls = get_runtime(name)
    reason = cls.export_unavailable(target, precision) or cls.run_unavailable(target)
    if reason:
        pytest.skip(f"{name} {precision}: {reason}")
    model = load_model(model_ref)
    adapter = cls(RuntimeOptions(target=target, precision=precision, threads=1, model=model_ref))
    adapter.calibration = calibration
    x = model.example
    adapter.load(adapter.export(model.module, x, tmp_path))
    return adapter, adapter.prepare(x.numpy())


@pytest.mark.parametrize("name", ["pytorch", "pytorch-compiled", "onnxruntime", "openvino", "executorch",
                                  "tflite"])
def test_the_dominant_convolution_is_the_top_operator_in_every_runtime(name, tmp_path):
    adapter, prepared = _loaded(name, "fp32", tmp_path)
    # A busy shared host can disturb a profile: on this project's 2-core CI host OpenVINO's counters twice gave
    # the 0.08 ms 1x1 convolution 4.6-6.9 ms, as long as the dominant one, in the medians of a whole profile.
    # So medians of 15 inferences, and up to five profiles until the dominant convolution (the most multiply-
    # adds, where the runtime's graph gives them) leads; a profiler that credits the time to the wrong
    # operator fails all five.
    dominant = 96 * 96 * 64 * 8 * 7 * 7  # 96 x 96 x 64 outputs of 8 x 7 x 7 products
    for _ in range(5):
        profile = summarise(adapter.profile(prepared, 15))
        top = profile.top(1)[0]
        # PyTorch's lines are operator types: their multiply-adds are all their calls' (or none on the line)
        if top.category == "convolution" and top.share > 0.5 and (top.macs == 0.0 or top.macs >= dominant):
            break
    assert top.category == "convolution", [(line.operator, line.kind, line.share) for line in profile.lines]
    assert top.share > 0.5 and top.executed == "fp32"
    # fp32 throughout, where the runtime says (PyTorch's compiled region mixes kernels: unknown)
    assert {line.executed for line in profile.lines if line.operator != OUTSIDE} <= {"fp32", ""}
    if name == "openvino":  # the kernel the plugin chose, with its precision in its name
        assert top.kernel.lower().endswith("f32"), top.kernel
    if name in ("onnxruntime", "openvino", "tflite"):  # their graphs give the shapes
        assert top.macs == dominant
        # and every multiply-add of the model: the 1x1 convolution and the linear layer too (OpenVINO runs the
        # linear layer as one FullyConnected node named after its bias Add)
        assert sum(line.macs for line in profile.lines) == dominant + 96 * 96 * 8 * 3 + 64 * 10
    if name in ("onnxruntime", "openvino", "pytorch"):
        assert top.layer == "2"  # the PyTorch module it came from: the Sequential's third layer
        # the linear layer's too, where OpenVINO names its node after the bias Add's output (`linear`)
        linear = [line for line in profile.lines if line.category == "matrix multiply" or line.macs == 64 * 10]
        assert linear and all(line.layer == "6" for line in linear), [(x.operator, x.layer) for x in profile.lines]
    if name == "pytorch":  # each operator on the module that ran it, multiply-adds included
        assert {line.layer for line in profile.lines if line.operator != OUTSIDE} <= {"0", "1", "2", "3", "4", "5",
                                                                                      "6", ""}
        assert sum(line.macs for line in profile.lines if line.layer == "2") == dominant
        assert f"{top.operator} in 2" in operators_text(profile.top(1))


def test_torchscript_names_the_operators_its_profiler_cannot_see(tmp_path):
    """TorchScript's optimized graph runs its oneDNN convolutions as JIT-only operators torch.profiler does not
    record: their time is the scripted forward's own, which the profile names for what it holds."""
    adapter, prepared = _loaded("torchscript", "fp32", tmp_path)
    top = summarise(adapter.profile(prepared, 5)).top(1)[0]
    assert top.operator.startswith("forward: JIT-only operators") and "mkldnn_convolution" in top.operator
    assert top.category == "other"  # not measured as a convolution, so not called one


@pytest.mark.parametrize(("kernel", "category", "row", "executed"), [
    # cuDNN's and cuBLAS's sm80+ kernels name their input, math and accumulation types
    ("sm80_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nhwc_tilesize128x128x16_stage4_warpsize2x2x1_g1",
     "convolution", "tf32", "tf32"),
    ("sm80_xmma_fprop_implicit_gemm_indexed_f32f32_f32f32_f32_nhwckrsc_nchw", "convolution", "fp32", "fp32"),
    ("sm80_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x32", "convolution", "fp16",
     "fp16"),  # fp16 math, fp32 accumulation: the math type
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matrix multiply", "bf16", "bf16"),
    ("ampere_sgemm_128x64_tn", "matrix multiply", "fp32", "fp32"),
    ("void implicit_convolve_sgemm<float, float, 128, 5, 5, 3, 3, 3, 1, false, false, true>(int, int)",
     "convolution", "tf32", "fp32"),  # a CUDA-core kernel in a row that allows TF32 still ran IEEE fp32
    ("void at::native::vectorized_elementwise_kernel<4, at::native::AUnaryFunctor<c10::Half, c10::Half>>(int)",
     "activation", "fp16", "fp16"),
    ("cutlass_80_tensorop_s1688gemm_128x128_32x3_tn_align4", "matrix multiply", "fp32", ""),  # says no type
    ("void cudnn::ops::nchwToNhwcKernel(cudnn::ops::nchw2nhwc_params_t)", "reshape/copy", "tf32", "fp32"),
])
def test_a_cuda_kernels_name_gives_its_precision_and_silence_is_unknown_only_for_multiply_adds(kernel, category,
                                                                                              row, executed):
    """Naming conventions of NVIDIA's libraries and PyTorch (not measured here: no GPU); the GPU test below checks
    them against the kernels a GPU really runs."""
    from edgebench.runtimes._torch import cuda_kernel_precision

    assert cuda_kernel_precision(kernel, category, row) == executed


@pytest.mark.parametrize(("kernel", "short"), [
    ("void at::native::vectorized_elementwise_kernel<4, at::native::(anonymous namespace)::launch_clamp_scalar("
     "at::TensorIteratorBase&)::{lambda()#1}>(int, at::detail::Array<char*, 2>)",
     "at::native::vectorized_elementwise_kernel"),
    ("sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nhwckrsc_nhwc", "sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_"
     "f32_nhwckrsc_nhwc"),
    ("void foo::operator>(int)", "foo::operator>"),  # a stray `>` does not swallow the rest
])
def test_a_cuda_kernels_line_is_named_without_its_template_and_parameters(kernel, short):
    from edgebench.runtimes._torch import short_kernel

    assert short_kernel(kernel) == short


@cuda
@pytest.mark.parametrize(("name", "precision"), [("pytorch", "fp32"), ("pytorch", "tf32"), ("pytorch", "fp16"),
                                                 ("torchscript", "fp32")])
def test_on_a_gpu_the_dominant_convolution_leads_and_its_kernel_says_the_rows_precision(name, precision, tmp_path):
    """torch.profiler's CUDA activity: each kernel under the operator that launched it. IEEE fp32 must run fp32
    kernels (TF32 off, `_torch.fp32_math`), tf32 TF32 ones, fp16 fp16 ones: the check that both the profile and
    the row's math mode are what they say."""
    from edgebench.runtimes._torch import UNLAUNCHED, tf32_unsupported

    if tf32_unsupported("gpu", precision):
        pytest.skip(tf32_unsupported("gpu", precision))
    adapter, prepared = _loaded(name, precision, tmp_path, target="gpu")
    profile = summarise(adapter.profile(prepared, 10))
    kernels = [(line.operator, line.executed, line.share) for line in profile.lines]
    top = profile.top(1)[0]
    assert top.category == "convolution" and top.share > 0.5, kernels
    assert top.executed == precision and top.kernel, kernels
    assert all(line.kernel for line in profile.lines if line.operator not in (OUTSIDE, UNLAUNCHED)), kernels
    assert 0 < profile.operator_ms <= profile.wall_ms


@cuda
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "int8"])
def test_on_a_gpu_tensorrts_layer_profiler_puts_the_dominant_convolution_first_in_the_rows_precision(precision,
                                                                                                  tmp_path):
    """TensorRT's IProfiler on a second context, joined to the engine inspector: the 7x7 convolution leads, and its
    layer's input format (or tactic, for TF32) says the row's precision."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt is not installed (make install-tensorrt)")
    calibration = np.random.default_rng(0).standard_normal((8, 3, 96, 96)).astype(np.float32)
    adapter, prepared = _loaded("tensorrt", precision, tmp_path, calibration=calibration, target="gpu")
    profile = summarise(adapter.profile(prepared, 10))
    layers = [(line.operator, line.kind, line.executed, line.kernel, line.share) for line in profile.lines]
    top = profile.top(1)[0]
    assert top.category == "convolution" and top.layer == "2" and top.macs == 96 * 96 * 64 * 8 * 7 * 7, layers
    assert top.executed == precision, layers
    assert 0 < profile.operator_ms <= profile.wall_ms


def _first_conv_left_float(name: str, tmp_path):
    """An int8 model of the big-conv network whose first convolution is excluded from quantization."""
    import onnx

    from edgebench.models import load_model
    from edgebench.runtimes._onnx import export_onnx, quantize_onnx

    cls = get_runtime(name)
    reason = cls.export_unavailable("cpu", "int8")
    if reason:
        pytest.skip(f"{name} int8: {reason}")
    model = load_model(BIG_CONV)
    float_path = export_onnx(model.module, model.example, tmp_path / "float.onnx")
    convs = [n.name for n in onnx.load(str(float_path)).graph.node if n.op_type == "Conv"]
    batches = [np.random.default_rng(i).standard_normal((1, 3, 96, 96)).astype(np.float32) for i in range(8)]
    adapter = cls(RuntimeOptions(target="cpu", precision="int8", threads=1, model=BIG_CONV))
    if name == "onnxruntime":
        artifact = quantize_onnx(float_path, tmp_path / "model.onnx", batches, float_nodes=(convs[0],))
    else:
        import nncf
        import openvino as ov

        float_model = ov.Core().read_model(str(float_path))  # OpenVINO names a convolution apart from its bias
        convs = [op.get_friendly_name() for op in float_model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        quantized = nncf.quantize(float_model, nncf.Dataset(batches), subset_size=8,
                                  ignored_scope=nncf.IgnoredScope(names=[convs[0]]))
        artifact = tmp_path / "model.xml"
        ov.save_model(quantized, str(artifact))
    adapter.load(artifact)
    return adapter, adapter.prepare(model.example.numpy()), convs


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_a_first_layer_left_float_shows_as_float_and_the_rest_as_integer(name, tmp_path):
    adapter, prepared, convs = _first_conv_left_float(name, tmp_path)
    profile = summarise(adapter.profile(prepared, 5))
    conv_lines = [line for line in profile.lines if line.category == "convolution"]
    by_name = {line.operator: line for line in conv_lines}
    assert by_name[convs[0]].executed == "fp32", [(c.operator, c.kind, c.executed) for c in conv_lines]
    assert by_name[convs[1]].executed == "int8", [(c.operator, c.kind, c.executed) for c in conv_lines]
    assert 0.5 < profile.integer_share() < 1.0
    assert convs[0] in [line.operator for line in profile.float_lines(5)]
    # The float layer is 0.1% of the multiply-adds (96 x 96 x 8 outputs of 3 products): the rest ran integer.
    assert by_name[convs[0]].macs == 96 * 96 * 8 * 3
    assert 0.998 < profile.integer_mac_share() < 1.0


def _litert_first_layer_left_float(tmp_path):
    """The big-conv network as a LiteRT int8 model whose first convolution is left out of quantization: the
    adapter's own litert-torch PT2E quantizer and calibration, with that layer's type set to no quantization."""
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torch import nn
    from torchao.quantization.pt2e import quantize_pt2e

    from edgebench.models import load_model

    cls = get_runtime("tflite")
    reason = cls.export_unavailable("cpu", "int8")
    if reason:
        pytest.skip(f"tflite int8: {reason}")

    class FloatConv(nn.Conv2d):
        """The first layer's own type, for the quantizer to leave it in float."""

    model = load_model(BIG_CONV)
    model.module[0].__class__ = FloatConv
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    for kind in (FloatConv, f"{FloatConv.__module__}.{FloatConv.__qualname__}"):  # as the adapter names a type
        quantizer.set_module_type(kind, None)
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model.module, (model.example,)).module(), quantizer)
    with torch.no_grad():
        for i in range(8):
            prepared(torch.from_numpy(np.random.default_rng(i).standard_normal((1, 3, 96, 96)).astype(np.float32)))
    quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    torch.nn.Module.train(quantized, False)
    artifact = tmp_path / "model.tflite"
    litert_torch.convert(quantized, (model.example,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
                         ).export(str(artifact))
    adapter = cls(RuntimeOptions(target="cpu", precision="int8", threads=1, model=BIG_CONV))
    adapter.load(artifact)
    return adapter, adapter.prepare(model.example.numpy())


def test_litert_shows_a_first_layer_left_float_as_float_and_the_rest_as_integer(tmp_path):
    """XNNPACK runs the 1x1 first layer as a matrix product (`Fully Connected (NC, F32) GEMM`): float, the
    one arithmetic operator that is; the dominant convolution and the classifier ran in integer kernels."""
    adapter, prepared = _litert_first_layer_left_float(tmp_path)
    profile = summarise(adapter.profile(prepared, 5))
    arithmetic = [line for line in profile.lines if line.category in ("convolution", "matrix multiply")]
    floats = [line for line in arithmetic if line.executed == "fp32"]
    assert len(floats) == 1 and floats[0].kind == "Fully Connected", [(a.operator, a.executed) for a in arithmetic]
    assert all(line.executed == "int8" for line in arithmetic if line not in floats)
    assert profile.top(1)[0].category == "convolution" and profile.top(1)[0].executed == "int8"
    assert 0.5 < profile.integer_share() < 1.0
    assert floats[0].operator in [line.operator for line in profile.float_lines(5)]
    # XNNPACK's multiply-add operators matched the model's one for one: their multiply-adds are the .tflite's.
    assert floats[0].macs == 96 * 96 * 8 * 3
    assert profile.top(1)[0].macs == 96 * 96 * 64 * 8 * 7 * 7
    assert 0.998 < profile.integer_mac_share() < 1.0


def test_litert_reads_its_profiler_records_and_refuses_a_layout_it_does_not_know():
    """The records are LiteRT's C structs (`ProfiledEventData`): read field by field, and a record whose event
    type is none of the profiler's says so rather than being misread."""
    import ctypes
    import struct

    from edgebench.runtimes._litert import LiteRtError, read_events

    tag = ctypes.create_string_buffer(b"Convolution (NHWC, QC8) IGEMM")
    layout = struct.Struct("<Qi4xQQ24x24xQQi4x")
    assert layout.size == 104  # sizeof(ProfiledEventData) in ai-edge-litert 2.3's libLiteRt.so
    raw = layout.pack(ctypes.addressof(tag), 8, 1000, 250, 7, 0, 2)
    (event,) = read_events(raw, 1)
    assert (event.tag, event.kind, event.us, event.node) == ("Convolution (NHWC, QC8) IGEMM", 8, 250, 7)
    with pytest.raises(LiteRtError, match="does not read as ProfiledEventData"):
        read_events(layout.pack(ctypes.addressof(tag), 3, 0, 0, 0, 0, 0), 1)


def test_litert_gives_multiply_adds_only_where_xnnpacks_operators_match_the_models():
    """XNNPACK fuses a PAD into the convolution after it, so its operator numbers are not the model's; its
    multiply-add operators still follow the model's one for one, and only then are they given the model's."""
    from edgebench.runtimes._litert import GraphOp, delegated_macs, op_macs, runs_as

    assert op_macs("CONV_2D", [(1, 8, 8, 3), (16, 3, 3, 3)], (1, 8, 8, 16)) == 8 * 8 * 16 * 27
    assert op_macs("DEPTHWISE_CONV_2D", [(1, 8, 8, 16), (1, 3, 3, 16)], (1, 8, 8, 16)) == 8 * 8 * 16 * 9
    assert op_macs("FULLY_CONNECTED", [(1, 64), (10, 64)], (1, 10)) == 640
    assert runs_as("CONV_2D", [(1, 8, 8, 3), (16, 1, 1, 3)]) == ("Convolution", "Fully Connected")
    assert runs_as("CONV_2D", [(1, 8, 8, 3), (16, 3, 3, 3)]) == ("Convolution",)
    one_by_one, depthwise, dense = ("Convolution", "Fully Connected"), ("Convolution",), ("Fully Connected",)
    graph = [GraphOp(0, "PAD", "int8", 0), GraphOp(1, "CONV_2D", "int8", 100, one_by_one),
             GraphOp(2, "DEPTHWISE_CONV_2D", "int8", 7, depthwise), GraphOp(3, "ADD", "int8", 0),
             GraphOp(4, "FULLY_CONNECTED", "int8", 5, dense), GraphOp(5, "DELEGATE", "", 0)]
    xnnpack = {0: "Fully Connected (NC, QS8, QC8W) GEMM", 1: "Convolution (NHWC, QC8) DWConv", 2: "Add (ND)",
               3: "Fully Connected (NC, QS8, QC8W) GEMM"}
    assert delegated_macs(xnnpack, graph, set()) == {0: 100, 1: 7, 2: 0, 3: 5}
    assert delegated_macs({**xnnpack, 1: "Add (ND)"}, graph, set()) is None  # one fewer multiply-add operator
    assert delegated_macs({**xnnpack, 0: "Convolution (NHWC, QC8) DWConv", 1: "Fully Connected (NC, F32) GEMM"},
                          graph, set()) is None  # a depthwise convolution cannot run as a matrix product
    assert delegated_macs({1: "Convolution (NHWC, QC8) DWConv", 3: "Fully Connected (NC, QS8, QC8W) GEMM"}, graph,
                          {1}) == {1: 7, 3: 5}  # CONV_2D ran in LiteRT's own kernel: not XNNPACK's to match
    assert delegated_macs(xnnpack, [*graph, GraphOp(6, "BATCH_MATMUL", "fp32", 0)], set()) is None


def test_pytorch_counts_each_call_once_from_its_recorded_shapes():
    """Eager PyTorch's convolutions nest (aten::conv2d > aten::convolution > aten::mkldnn_convolution): each is
    counted once, at the outermost, with its stride, padding and groups, and adds up to FlopCounterMode's count."""
    import torch
    from torch import nn

    from edgebench.runtimes._torch import call_macs, model_macs, profile_calls, recorded_macs

    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8),
                          nn.Flatten(), nn.Linear(8 * 14 * 14, 10)).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = 2 * (16 * 16 * 8 * 27 + 14 * 14 * 8 * 9 + 10 * 8 * 14 * 14)
    with torch.inference_mode():
        recorded = recorded_macs(lambda: model(x))
    assert recorded == {("aten::conv2d", ""): 2 * (16 * 16 * 8 * 27 + 14 * 14 * 8 * 9),
                        ("aten::linear", ""): 2 * 10 * 1568}  # no module records: no layer
    assert model_macs(model, x) == sum(recorded.values()) == expected
    with torch.inference_mode():  # a count that is not the model's puts no multiply-adds on the profile
        agreed = summarise(profile_calls(lambda: model(x), 2, "fp32", model_macs=expected))
        disagreed = summarise(profile_calls(lambda: model(x), 2, "fp32", model_macs=expected * 1.01))
    assert sum(line.macs for line in agreed.lines) == expected
    assert sum(line.macs for line in disagreed.lines) == 0 and disagreed.integer_mac_share() is None
    assert call_macs("aten::relu", [[2, 8, 16, 16]], [None]) == 0.0
    # oneDNN's binary convolution takes its accumulator first: read by name, not by position
    assert call_macs("mkldnn::_convolution_pointwise_", [[1, 8, 4, 4], [1, 8, 4, 4], [8, 8, 1, 1], [8], [], [], [],
                                                         [], [], [], [], [], []],
                     [None, None, None, None, [0, 0], [1, 1], [1, 1], 1, "sum", 1.0, None, [], None]) == 16 * 64


def test_eager_layers_take_a_model_with_a_scripted_part_and_leave_no_hooks_behind():
    """A user's eager model may hold a scripted submodule, which takes no hooks: its operators go to the eager
    module around it, the rest to their own layers; and the hooks come off after the profile."""
    import torch

    from edgebench.runtimes._torch import profile_calls

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.jit.script(torch.nn.Sequential(torch.nn.ReLU())))
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        profile = summarise(profile_calls(lambda: model(x), 2, "fp32", None, model))
    layers = {line.layer for line in profile.lines if line.category == "convolution"}
    assert layers == {"0"}, [(line.operator, line.layer) for line in profile.lines]
    assert not model[0]._forward_pre_hooks and not model[0]._forward_hooks


def test_compiled_pytorch_int8_gives_its_multiply_adds_in_integer_kernels(tmp_path):
    """The big-conv network's int8 with its first layer left float (torchao's X86 quantizer, that module set to
    none): oneDNN runs it in a float kernel, the rest in integer ones, and the multiply-adds say by how much."""
    import torch

    from edgebench.models import load_model
    from edgebench.runtimes._torch import drop_unused_tensors, pt2e_quantized

    cls = get_runtime("pytorch-compiled")
    reason = cls.export_unavailable("cpu", "int8")
    if reason:
        pytest.skip(f"pytorch-compiled int8: {reason}")
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    model = load_model(BIG_CONV)
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    quantizer.set_module_name_qconfig("0", None)
    batches = [np.random.default_rng(i).standard_normal((1, 3, 96, 96)).astype(np.float32) for i in range(4)]
    quantized = drop_unused_tensors(pt2e_quantized(model.module, model.example, quantizer, batches))
    artifact = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(quantized, (model.example,)), str(artifact))
    adapter = cls(RuntimeOptions(target="cpu", precision="int8", threads=1, model=BIG_CONV))
    adapter.load(artifact)
    kernels = {(id(module), name): kernel for module in adapter.compiled.generated
               for name, kernel in vars(module).items() if name.startswith("cpp_fused_")}
    profile = summarise(adapter.profile(adapter.prepare(model.example.numpy()), 3))
    counted = {line.kind: line.macs for line in profile.lines if line.macs}
    assert sum(counted.values()) == 96 * 96 * 8 * 3 + 96 * 96 * 64 * 8 * 49 + 64 * 10, counted
    floats = [line for line in profile.lines if line.macs and line.executed != "int8"]
    assert [line.macs for line in floats] == [96 * 96 * 8 * 3], [(f.kind, f.executed) for f in floats]
    assert 0.998 < profile.integer_mac_share() < 1.0
    # Inductor's own C++ kernels on lines of their own, each in the type it reads: the float layer's ReLU and the
    # quantization of its output read float, the pooling fused between dequantize and quantize reads integers.
    generated = {line.operator: line.executed for line in profile.lines if line.operator.startswith("cpp_fused_")}
    assert kernels and len(generated) == len(kernels), generated
    assert generated["cpp_fused_relu_0"] == "fp32" and generated["cpp_fused_quantize_per_tensor_1"] == "fp32"
    assert [executed for name, executed in generated.items() if name.startswith("cpp_fused_dequantize")] == ["int8"]
    assert kernels == {(id(module), name): kernel for module in adapter.compiled.generated  # put back after
                       for name, kernel in vars(module).items() if name.startswith("cpp_fused_")}
    # The compiled region's own line (its Python wrapper) is named without Inductor's cache key, which changes
    # with the cache (`None` with it off), so that two runs name the same code alike.
    assert "## Call CompiledFxGraph ##" in {line.operator for line in profile.lines}


def test_a_row_without_a_profile_says_why_in_its_table():
    from edgebench.bench.report import profile_section
    from edgebench.bench.results import ResultRow

    row = ResultRow(model="m", weights="random", compression="none", runtime="aoti", format="AOTInductor",
                    precision="fp32", target="cpu", device="cpu", batch=1, threads=2, status="ok", p50_ms=1.0,
                    profile_note="its kernels run inside one C++ call")
    assert "no profile: its kernels run inside one C++ call" in profile_section([row])


def test_a_profiled_run_writes_profile_csv_and_its_table_and_keeps_its_timed_figures(tmp_path, fast_timing):
    """PROFILE=1 end to end: every operator in profile.csv from each runtime's own profiler (LiteRT's through
    its C API), a summary per row in table.md; and the timed rounds are the same rounds as without it (the
    profiled inferences come after them, in no sample). Whether profiling moves the p50 is a figure measured in the
    README ("Profiling does not move the timed figures"), not a pass/fail on timing."""
    from test_runner import run

    from edgebench.bench.config import BenchConfig
    from edgebench.bench.results import read_rows

    runs = {}
    for profiled in (True, False):
        out = tmp_path / ("profiled" if profiled else "plain")
        run(BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "onnxruntime", "tflite"), out=out, timing=fast_timing,
                        repeats=3, profile=profiled))
        runs[profiled] = {row.runtime: row for row in read_rows(out)}
    profiled, plain = runs[True], runs[False]
    with open(tmp_path / "profiled" / "profile.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert {line["runtime"] for line in lines} == {"pytorch", "onnxruntime", "tflite"}
    assert {line["category"] for line in lines if line["runtime"] == "onnxruntime"} >= {"convolution"}
    for runtime in ("pytorch", "onnxruntime", "tflite"):
        mine = [line for line in lines if line["runtime"] == runtime]
        assert sum(float(line["share"]) for line in mine) == pytest.approx(1.0)
        assert profiled[runtime].profile_ms is not None and profiled[runtime].profile_top
        assert profiled[runtime].profile_pace_ms > 0 and plain[runtime].profile_pace_ms is None
    table = (tmp_path / "profiled" / "table.md").read_text()
    assert "## Operator profiles" in table and "no profile" not in table
    assert "## Operator profiles" not in (tmp_path / "plain" / "table.md").read_text()
    assert not (tmp_path / "plain" / "profile.csv").exists()
    import pandas as pd

    parquet = pd.read_parquet(tmp_path / "profiled" / "profile.parquet")  # the same lines, for notebooks
    assert parquet.to_dict("records") == pd.read_csv(tmp_path / "profiled" / "profile.csv",
                                                     keep_default_na=False).to_dict("records")
    from edgebench.reports.build import build_report
    from edgebench.reports.runs import load_run

    report = build_report([load_run(tmp_path / "profiled")], tmp_path / "report").read_text()
    assert "## Operator profiles" in report and "Where each runtime spends its time" in report
    assert (tmp_path / "report" / "plots" / "profiled-cpu-profile.png").exists()
    beside = pd.read_parquet(tmp_path / "report" / "profile.parquet")  # every profiled run's lines beside the rows
    assert len(beside) == len(lines) and set(beside["run"]) == {"profiled"}
    assert "and the operator profiles (profile.csv, profile.parquet) are beside this file" in report
    plain_report = build_report([load_run(tmp_path / "plain")], tmp_path / "plain-report").read_text()
    assert "Operator profiles" not in plain_report
    assert not (tmp_path / "plain-report" / "profile.parquet").exists()
    log = (tmp_path / "profiled" / "run.log").read_text()
    for label in ("PyTorch", "ONNX Runtime", "TFLite"):  # after every timed round of the row, never between them
        found = re.search(rf"{label} fp32 b1: profiled 20 inferences after its (\d+) timed rounds, .*unprofiled "
                          r"right after, median [\d.]+ ms, x[\d.]+ of the timed rounds'", log)
        assert found and int(found.group(1)) >= 3, label  # 3 kept, and any redone for noise
    for runtime in ("pytorch", "onnxruntime", "tflite"):  # timed as before: the profiled inferences are not samples
        assert profiled[runtime].iterations == plain[runtime].iterations == 3 * fast_timing.min_iters
        assert profiled[runtime].repeats == plain[runtime].repeats == 3


def _profiled_run(name: str, conv_ms: float, tmp_path):
    from edgebench.bench.measure.profile import ProfileLine
    from edgebench.bench.results import ResultRow
    from edgebench.reports.runs import Run

    row = ResultRow(model="m", weights="random", compression="none", runtime="onnxruntime", format="ONNX Runtime",
                    precision="fp32", target="cpu", device="cpu", batch=1, threads=2, status="ok", p50_ms=conv_ms + 1)
    run = Run(tmp_path / name, [row])

    def line(operator: str, kind: str, ms: float) -> ProfileLine:
        return ProfileLine(name, row.key, "onnxruntime", "fp32", operator, kind, "", "convolution", "fp32", "", 0.0,
                           ms, 0, 1)

    run.__dict__["profile"] = [line("node_Conv_1", "Conv", conv_ms), line("node_Relu_1", "Relu", 0.5),
                               line(OUTSIDE, "", 0.2)]
    return run


def test_compare_says_which_operators_changed_most(tmp_path):
    from edgebench.reports.compare import operator_changes

    text = operator_changes(_profiled_run("base", 2.0, tmp_path), _profiled_run("new", 5.0, tmp_path), top=1)
    assert "node_Conv_1 (Conv) +3.000 ms (2.000 to 5.000)" in text and "+3.000 ms |" in text
    assert "node_Relu_1" not in text  # unchanged: not among the largest
    unprofiled = _profiled_run("plain", 2.0, tmp_path)
    unprofiled.__dict__["profile"] = []
    assert operator_changes(unprofiled, _profiled_run("new", 5.0, tmp_path)) == ""


def test_compare_names_eager_layers_only_where_both_runs_have_them(tmp_path):
    """Eager PyTorch's lines are operator types on layers; a run from before layers has types only, and is
    compared type by type rather than as every layer new."""
    from edgebench.bench.measure.profile import ProfileLine
    from edgebench.bench.results import ResultRow
    from edgebench.reports.compare import operator_changes
    from edgebench.reports.runs import Run

    row = ResultRow(model="m", weights="random", compression="none", runtime="pytorch", format="PyTorch",
                    precision="fp32", target="cpu", device="cpu", batch=1, threads=2, status="ok", p50_ms=4.0)

    def run(name: str, *layers: tuple[str, float]) -> Run:
        made = Run(tmp_path / name, [row])
        made.__dict__["profile"] = [ProfileLine(name, row.key, "pytorch", "fp32", "aten::mkldnn_convolution",
                                                "aten::mkldnn_convolution", layer, "convolution", "fp32", "", 0.0,
                                                ms, 0, 1) for layer, ms in layers]
        return made

    typed, layered = run("typed", ("", 3.0)), run("layered", ("0", 1.0), ("2", 3.0))
    assert "aten::mkldnn_convolution +1.000 ms (3.000 to 4.000)" in operator_changes(typed, layered, top=1)
    both = operator_changes(run("earlier", ("0", 1.0), ("2", 2.0)), layered, top=1)
    assert "aten::mkldnn_convolution in 2 +1.000 ms (2.000 to 3.000)" in both


def test_a_profiled_rows_peak_memory_leaves_out_the_profiling_session(tmp_path):
    """ONNX Runtime and OpenVINO profile a second session: the row's peak RSS is the one from before it."""
    from types import SimpleNamespace

    from edgebench.bench.results import ResultRow
    from edgebench.bench.runner import Runner

    row = ResultRow(model="m", weights="random", compression="none", runtime="onnxruntime", format="ONNX Runtime",
                    precision="int8", target="cpu", device="cpu", batch=1, threads=2, status="ok", peak_rss_mb=900.0)
    blank = {"run": "", "key": "", "runtime": "", "precision": "", "layer": "", "kernel": "", "macs": 0.0, "calls": 1}
    lines = [{**blank, "operator": "c", "kind": "QLinearConv", "category": "convolution", "executed": "int8",
              "ms": 3.0, "share": 0.75},
             {**blank, "operator": OUTSIDE, "kind": "", "category": "other", "executed": "", "ms": 1.0, "share": 0.25}]
    runner = SimpleNamespace(run_dir=tmp_path / "run", profiles={})
    Runner._fill_profile(runner, row, {"profile": {"iterations": 20, "wall_ms": 4.0, "after_rounds": 10,
                                                   "lines": lines}, "rss_before_profile_mb": 600.0})
    assert row.peak_rss_mb == 600.0
    assert row.int8_coverage == 1.0 and row.profile_ms == 4.0 and row.profile_top == "c (QLinearConv) 75%"
    assert row.int8_mac_coverage is None  # no multiply-adds in this profile: not a share of nothing
    assert [line.key for line in runner.profiles[row.key]] == [row.key, row.key]
    unavailable = ResultRow(**{**row.__dict__, "peak_rss_mb": 900.0, "profile_ms": None, "profile_top": "",
                               "int8_coverage": None})
    Runner._fill_profile(runner, unavailable, {"profile": {"unavailable": "no profiler"}})
    assert unavailable.profile_note == "no profiler" and unavailable.peak_rss_mb == 900.0


def test_openvino_notes_each_nodes_module_beside_the_ir_and_the_note_is_no_part_of_its_size(tmp_path,
                                                                                           tmp_path_factory):
    """OpenVINO keeps the ONNX nodes' names but drops their metadata: the export notes which PyTorch module each
    node came from (`layers.edgebench.json`), which the profile's `layer` reads; the note is cached with the IR
    but is not what a deployment ships, so neither the row's size nor its zipped size counts it."""
    import json

    from edgebench.compression.measures import zipped_bytes
    from edgebench.runtimes.base import artifact_size_bytes

    adapter, _ = _loaded("openvino", "fp32", tmp_path)
    folder = adapter.artifact_path.parent
    layers = json.loads((folder / "layers.edgebench.json").read_text())
    assert set(layers.values()) >= {"0", "2", "6"}  # the Sequential's convolutions and its Linear
    shipped = [p for p in folder.iterdir() if p.suffix in (".xml", ".bin")]
    assert artifact_size_bytes(folder) == sum(p.stat().st_size for p in shipped)
    alone = tmp_path_factory.mktemp("ir-alone")
    for p in shipped:
        (alone / p.name).write_bytes(p.read_bytes())
    assert zipped_bytes(folder) == zipped_bytes(alone)


def test_a_profile_taken_while_other_processes_computed_is_taken_again(tmp_path, monkeypatch):
    """As a timed round is: the worker reads the CPU other processes used during the profile and profiles again
    when it was over the noise floor, up to PROFILE_TRIES in all, keeping the last."""
    from types import SimpleNamespace

    from edgebench.bench import worker
    from edgebench.bench.measure import cpuload

    adapter, prepared = _loaded("onnxruntime", "fp32", tmp_path, TINY_MODEL)
    readings = []

    class Neighbour(cpuload.ForeignLoadTracker):
        """Reads the machine as the real tracker does, then reports what the test's neighbour did."""

        def __exit__(self, *exc: object) -> None:
            super().__exit__(*exc)
            self.load = cpuload.CpuLoad(foreign=readings.pop(0), tick=0.01)

    monkeypatch.setattr(cpuload, "ForeignLoadTracker", Neighbour)
    monkeypatch.setattr(worker, "PROFILE_QUIET_WAIT_S", 0.0)
    job = SimpleNamespace(profile=True)
    readings[:] = [0.5, 0.02]
    found = worker._profile(adapter, job, tmp_path, prepared, 3)["profile"]
    assert found["tries"] == 2 and found["foreign_load"] == 0.02 and found["lines"]
    readings[:] = [0.5, 0.5, 0.5]
    found = worker._profile(adapter, job, tmp_path, prepared, 3)["profile"]
    assert found["tries"] == worker.PROFILE_TRIES == 3 and found["foreign_load"] == 0.5 and not readings
    readings[:] = [0.05]
    assert worker._profile(adapter, job, tmp_path, prepared, 3)["profile"]["tries"] == 1


def test_a_profile_taken_in_a_slow_stretch_of_the_host_is_taken_again_and_its_pace_kept(tmp_path, monkeypatch):
    """A shared VM slows down with no other process to blame: the unprofiled inferences timed right after each
    profile say so when they ran over SLOW_STRETCH times the timed rounds' median, and the profile is taken
    again; the pace is kept, and the table gives the profiler's overhead over it."""
    from types import SimpleNamespace

    from edgebench.bench import worker
    from edgebench.bench.measure import cpuload
    from edgebench.bench.report import profile_cells
    from edgebench.bench.results import ResultRow

    adapter, prepared = _loaded("onnxruntime", "fp32", tmp_path, TINY_MODEL)
    monkeypatch.setattr(worker, "PROFILE_QUIET_WAIT_S", 0.0)
    # A quiet machine, whatever ran beside the test: a neighbour's load would be a second reason to profile again.
    real_tracker = cpuload.ForeignLoadTracker
    monkeypatch.setattr(cpuload, "ForeignLoadTracker", lambda: real_tracker(read=lambda: None))
    paces = []
    monkeypatch.setattr(worker, "_pace_ms", lambda step: paces.pop(0))
    job = SimpleNamespace(profile=True)
    paces[:] = [2.0, 1.1]  # twice the timed median, then the timed rounds' pace again
    found = worker._profile(adapter, job, tmp_path, prepared, 3, step=lambda: None, timed_ms=1.0)["profile"]
    assert found["tries"] == 2 and found["pace_ms"] == 1.1 and found["timed_ms"] == 1.0
    paces[:] = [1.2]  # within SLOW_STRETCH
    assert worker._profile(adapter, job, tmp_path, prepared, 3, step=lambda: None, timed_ms=1.0)["profile"][
        "tries"] == 1
    paces[:] = [5.0]  # throughput mode: no timed median to judge the pace by
    assert worker._profile(adapter, job, tmp_path, prepared, 3, step=lambda: None, timed_ms=None)["profile"][
        "tries"] == 1
    row = ResultRow(model="m", weights="random", compression="none", runtime="onnxruntime", format="ONNX Runtime",
                    precision="fp32", target="cpu", device="cpu", batch=1, threads=2, status="ok", p50_ms=1.0,
                    profile_ms=1.3, profile_pace_ms=1.0)
    assert profile_cells(row)[0] == "1.300 (x1.30)"


def test_the_pace_is_the_median_of_unprofiled_inferences_of_the_timed_step():
    import time

    from edgebench.bench import worker

    calls = []
    pace = worker._pace_ms(lambda: calls.append(time.sleep(0.006)))  # ten of them outlast PACE_MIN_S
    assert len(calls) == worker.PACE_WARMUP + worker.PACE_ITERATIONS and pace >= 6.0  # a sleep lasts as asked
    calls.clear()
    start = time.perf_counter()
    worker._pace_ms(lambda: calls.append(time.sleep(0.0001)))  # a fast step: more than ten, until PACE_MIN_S
    assert len(calls) - worker.PACE_WARMUP > worker.PACE_ITERATIONS
    assert time.perf_counter() - start >= worker.PACE_MIN_S


def test_litert_without_its_c_library_has_no_profile_and_says_why(tmp_path, monkeypatch):
    import ai_edge_litert

    from edgebench.runtimes import _litert
    from edgebench.runtimes.base import ProfileUnavailable

    monkeypatch.setattr(ai_edge_litert, "__file__", str(tmp_path / "__init__.py"))  # a wheel built without it
    with pytest.raises(ProfileUnavailable, match="no LiteRT C library"):
        _litert.library()


def test_openvino_gives_a_fused_linear_layer_its_matmuls_multiply_adds_once():
    from edgebench.runtimes.openvino_ir import node_macs

    macs, adds = {"node_linear/WithoutBiases": 640.0}, {"linear": ("node_linear/WithoutBiases", 640.0)}
    assert node_macs("linear", macs, adds, {"linear"}) == 640  # MatMul and Add ran as one FullyConnected node
    assert node_macs("node_linear/WithoutBiases", macs, adds, {"linear", "node_linear/WithoutBiases"}) == 640
    assert node_macs("linear", macs, adds, {"linear", "node_linear/WithoutBiases"}) == 0  # not counted twice


def test_eager_layers_and_exported_nodes_meet_at_their_module_block():
    """An exported convolution with a folded BatchNorm carries the BatchNorm's module path; eager PyTorch runs the
    convolution in its sibling module. The report compares them at the parent of both, summing what each row ran
    there; a block only one runtime names, or rows of one runtime alone, make no comparison."""
    from edgebench.bench.measure.profile import ProfileLine
    from edgebench.bench.results import ResultRow
    from edgebench.reports.tables import slowest_blocks

    def row(runtime: str, precision: str = "fp32") -> ResultRow:
        return ResultRow(model="m", weights="random", compression="none", runtime=runtime, format=runtime,
                         precision=precision, target="cpu", device="cpu", batch=1, threads=2, status="ok", p50_ms=4.0)

    eager, onnx, onnx_int8 = row("pytorch"), row("onnxruntime"), row("onnxruntime", "int8")

    def line(r: ResultRow, operator: str, layer: str, ms: float) -> ProfileLine:
        # Eager's lines are operator types; an exported runtime's are nodes, of a type.
        kind = operator if r.runtime == "pytorch" else {"node_Conv_1": "Conv", "node_Gemm_2": "Gemm"}.get(operator, "")
        return ProfileLine("run", r.key, r.runtime, r.precision, operator, kind, layer, "other", "fp32", "",
                           0.0, ms, 0, 1)

    lines = [line(eager, "aten::mkldnn_convolution", "block.0.0", 2.0),
             line(eager, "aten::batch_norm", "block.0.1", 0.5), line(eager, "aten::relu_", "block.0.2", 0.25),
             line(eager, "aten::addmm", "head", 0.1),
             line(onnx, "node_Conv_1", "block.0.1", 1.0), line(onnx_int8, "node_Conv_1", "block.0.1", 0.5),
             line(onnx, "(outside operators)", "", 9.0), line(onnx, "node_Gemm_2", "", 0.2)]
    headers, body = slowest_blocks([eager, onnx, onnx_int8], lines)
    assert headers == ["PyTorch module block", "pytorch fp32 ms", "onnxruntime fp32 ms", "onnxruntime int8 ms"]
    assert body == [["block.0", "2.750", "1.000", "0.500"]]  # `head` is eager's alone
    assert slowest_blocks([onnx, onnx_int8], lines[4:]) == ([], [])  # one runtime: nothing to compare
    openvino = row("openvino")  # exported runtimes alone: their node names are the comparison
    assert slowest_blocks([onnx, openvino], lines[4:] + [line(openvino, "node_Conv_1", "block.0.1", 1.0)]) == ([], [])
