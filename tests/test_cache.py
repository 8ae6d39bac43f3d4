"""The artifact cache: a warm re-run exports nothing, and an entry is never served for another key.

Every input of an export changes the key (module bytes, timed input, calibration and task where they are
read, runtime, target, precision, seed, QAT epochs, adapter source, library versions, and for machine code the
CPU's extensions and the threads); inputs an export
does not read do not. Entries are written whole and restored with the QAT reference they came with.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.bench.cache import ArtifactCache, cache_key
from edgebench.bench.job import MeasureJob
from edgebench.runtimes import RuntimeOptions

VERSIONS = {"torch": "2.14.1", "onnxruntime": "1.32.0"}


@pytest.fixture()
def job(tmp_path) -> MeasureJob:
    files = {}
    for name, value in (("model.pt", b"module"), ("input.npy", b"input"), ("calibration.npy", b"calib"),
                        ("task.npz", b"task")):
        files[name] = tmp_path / name
        files[name].write_bytes(value)
    return MeasureJob(adapter="edgebench.runtimes.onnxrt:OnnxRuntime", options=RuntimeOptions(precision="fp32"),
                      model_file=str(files["model.pt"]), input=str(files["input.npy"]), reference="",
                      artifact_dir=str(tmp_path / "artifact"), task=str(files["task.npz"]),
                      calibration=str(files["calibration.npy"]))


def rewrite(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


def test_the_same_export_gets_the_same_key(job):
    assert cache_key(job, VERSIONS) == cache_key(replace(job), dict(VERSIONS))


@pytest.mark.parametrize("change", [
    lambda j: replace(j, options=replace(j.options, precision="fp16")),
    lambda j: replace(j, options=replace(j.options, target="gpu")),
    lambda j: replace(j, options=replace(j.options, seed=1)),
    lambda j: replace(j, adapter="edgebench.runtimes.openvino_ir:OpenVINO"),
    lambda j: rewrite(j.model_file, b"pruned module") or j,
    lambda j: rewrite(j.input, b"input at batch 8") or j,
])
def test_every_input_of_the_export_changes_the_key(job, change):
    before = cache_key(job, VERSIONS)
    assert cache_key(change(job), VERSIONS) != before


def test_threads_change_the_key_only_of_an_artifact_of_machine_code(job):
    """An AOTInductor package is compiled for the row's threads (and this CPU); an ONNX file is not."""
    two = replace(job, options=replace(job.options, threads=2))
    assert cache_key(job, VERSIONS) == cache_key(two, VERSIONS)
    aoti = replace(job, adapter="edgebench.runtimes.aoti:AOTInductor")
    assert cache_key(aoti, VERSIONS) != cache_key(replace(aoti, options=two.options), VERSIONS)


def test_library_versions_change_the_key(job):
    assert cache_key(job, VERSIONS) != cache_key(job, {**VERSIONS, "onnxruntime": "1.33.0"})


def test_calibration_and_task_count_only_where_the_export_reads_them(job):
    fp32 = cache_key(job, VERSIONS)
    int8 = replace(job, options=replace(job.options, precision="int8"))
    int8_key, qat_key = cache_key(int8, VERSIONS), cache_key(replace(int8, qat_epochs=2), VERSIONS)
    rewrite(job.calibration, b"other calibration images")
    rewrite(job.task, b"other task")
    assert cache_key(job, VERSIONS) == fp32  # fp32 reads neither
    assert cache_key(int8, VERSIONS) != int8_key  # int8 calibrates
    assert cache_key(replace(int8, qat_epochs=2), VERSIONS) != qat_key  # QAT trains on the task
    assert cache_key(replace(int8, qat_epochs=3), VERSIONS) != cache_key(replace(int8, qat_epochs=2), VERSIONS)


def test_a_user_adapter_files_source_is_part_of_the_key(job, tmp_path):
    adapter = tmp_path / "my_runtime.py"
    header = "from edgebench.runtimes.base import Runtime\n"
    adapter.write_text(f"{header}class Mine(Runtime): pass\n")
    mine = replace(job, adapter=f"{adapter}:Mine")
    before = cache_key(mine, VERSIONS)
    adapter.write_text(f"{header}class Mine(Runtime):\n    pass  # changed\n")
    assert cache_key(mine, VERSIONS) != before


@pytest.mark.parametrize("folder", ["models", "compression"])
def test_the_code_a_pickled_module_is_rebuilt_from_is_part_of_the_key(job, folder, monkeypatch, tmp_path):
    """A pickle names its classes without their code: editing models/ or compression/ must change the key."""
    import edgebench.bench.cache

    fake = tmp_path / "project"
    for name in ("runtimes", "models", "compression", "bench"):
        (fake / name).mkdir(parents=True)
        (fake / name / "a.py").write_text("x = 1\n")
    for name in ("worker.py", "variants.py"):
        (fake / "bench" / name).write_text("\n")
    monkeypatch.setattr(edgebench.bench.cache, "PROJECT_ROOT", fake)
    before = cache_key(job, VERSIONS)
    (fake / folder / "a.py").write_text("x = 2\n")
    assert cache_key(job, VERSIONS) != before


def test_gpu_engines_are_keyed_by_the_device_and_cpu_exports_are_not(job, monkeypatch):
    import edgebench.bench.cache

    assert edgebench.bench.cache.device_facts("cpu") == {}
    monkeypatch.setattr(edgebench.bench.cache, "device_facts", lambda target: {"device": "H200", "driver": "580"})
    gpu = replace(job, options=RuntimeOptions(target="gpu"))
    before = cache_key(gpu, VERSIONS)
    monkeypatch.setattr(edgebench.bench.cache, "device_facts", lambda target: {"device": "H200", "driver": "590"})
    assert cache_key(gpu, VERSIONS) != before


def test_store_then_restore_copies_the_artifact_and_the_qat_reference(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    exported = tmp_path / "run1" / "artifact"
    (exported / "model.xml").parent.mkdir(parents=True)
    (exported / "model.xml").write_text("<xml/>")
    (exported / "model.bin").write_bytes(b"\0" * 10)
    reference = tmp_path / "run1" / "qat_outputs.npz"
    np.savez(reference, out_0=np.ones(3))
    cache.store("k1", exported, str(exported / "model.xml"), 12.5, 300.0, str(reference), {"distinct": [4]}, 123)
    cache.store("k1", exported, str(exported / "model.xml"), 99.0, None)  # a second store keeps the first
    assert cache.restore("other", tmp_path / "run2" / "artifact", tmp_path / "run2" / "job") is None
    got = cache.restore("k1", tmp_path / "run2" / "artifact", tmp_path / "run2" / "job")
    assert got.export_s == 12.5 and got.export_peak_rss_mb == 300.0 and got.contents == {"distinct": [4]}
    assert got.zip_bytes == 123  # the deflated size travels with the artifact: a warm run does not zip again
    assert Path(got.artifact) == tmp_path / "run2" / "artifact" / "model.xml"
    assert (tmp_path / "run2" / "artifact" / "model.bin").read_bytes() == b"\0" * 10
    assert Path(got.reference).parent == tmp_path / "run2" / "job"
    assert np.load(got.reference)["out_0"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["k1"]  # no half-written entries left


def test_saving_the_same_module_twice_gives_the_same_bytes_so_a_rerun_hits(tmp_path):
    from edgebench.bench.cache import file_digest
    from edgebench.models import load_model

    from tests_paths import TINY_MODEL

    for run in ("a", "b"):  # the same file name: torch.save names the archive's records after it
        (tmp_path / run).mkdir()
        torch.save(load_model(TINY_MODEL, None, 0).module, tmp_path / run / "model.pt")
    assert file_digest(tmp_path / "a" / "model.pt") == file_digest(tmp_path / "b" / "model.pt")


def test_tensorrts_version_is_in_the_environment_and_the_key_under_its_distribution_name(job, monkeypatch):
    """TensorRT installs as `tensorrt-cu13`: looked up as `tensorrt`, its version was in neither the run's
    environment nor the cache key, so an engine of another TensorRT could be restored."""
    from importlib import metadata

    from edgebench.bench import environment

    real = metadata.version

    def version(name):
        return "10.16.1" if name == "tensorrt-cu13" else real(name)

    monkeypatch.setattr(environment.metadata, "version", version)
    versions = environment.package_versions()
    assert versions["tensorrt-cu13"] == "10.16.1"
    assert cache_key(job, versions) != cache_key(job, {k: v for k, v in versions.items() if k != "tensorrt-cu13"})
