# edgebench: `make bench` and `make test` set everything up on first use.
# Every variable below is also a CLI flag of `python -m edgebench.bench` (see `make help`).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The extras installed: ONNX Runtime's CPU build by default; `make install-gpu` records `gpu` here instead.
EXTRAS = $(shell cat $(VENV)/extras 2>/dev/null || echo dev,yolo,cpu)
# TensorRT's wheels live on NVIDIA's index (PyPI holds stubs that fetch from it while installing).
NVIDIA_INDEX ?= https://pypi.nvidia.com

MODEL        ?=
WEIGHTS      ?=
RUNTIMES     ?=
PRECISION    ?=
BATCH        ?=
THREADS      ?=
TARGET       ?=
OUT          ?=
WARMUP       ?=
ITERS        ?=
DURATION     ?=
MAX_DURATION ?=
TIMEOUT      ?=
SEED         ?=
COMPRESS     ?=
DATA         ?=
PREPROCESS   ?=
FINETUNE     ?=
REPEATS      ?=
CACHE        ?=
MODE         ?=
TARGET_CI    ?=
MAX_REPEATS  ?=
EXPORT_JOBS  ?=
LOAD_JOBS    ?=
WARM_EXPORTS ?=
PROFILE      ?=
RESUME       ?=
FLEET        ?=
DEVICES      ?=
TASK         ?=

BENCH_FLAGS = $(if $(MODEL),--model $(MODEL)) $(if $(WEIGHTS),--weights $(WEIGHTS)) \
	$(if $(RUNTIMES),--runtimes $(RUNTIMES)) $(if $(PRECISION),--precision $(PRECISION)) \
	$(if $(BATCH),--batch $(BATCH)) $(if $(THREADS),--threads $(THREADS)) $(if $(TARGET),--target $(TARGET)) \
	$(if $(OUT),--out $(OUT)) $(if $(WARMUP),--warmup $(WARMUP)) $(if $(ITERS),--iters $(ITERS)) \
	$(if $(DURATION),--duration $(DURATION)) $(if $(MAX_DURATION),--max-duration $(MAX_DURATION)) \
	$(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(SEED),--seed $(SEED)) \
	$(if $(COMPRESS),--compress $(COMPRESS)) $(if $(DATA),--data $(DATA)) \
	$(if $(PREPROCESS),--preprocess $(PREPROCESS)) \
	$(if $(FINETUNE),--finetune-epochs $(FINETUNE)) $(if $(REPEATS),--repeats $(REPEATS)) \
	$(if $(CACHE),--cache $(CACHE)) $(if $(MODE),--mode $(MODE)) \
	$(if $(TARGET_CI),--target-ci $(TARGET_CI)) $(if $(MAX_REPEATS),--max-repeats $(MAX_REPEATS)) \
	$(if $(EXPORT_JOBS),--export-jobs $(EXPORT_JOBS)) $(if $(LOAD_JOBS),--load-jobs $(LOAD_JOBS)) \
	$(if $(filter 0 no off,$(WARM_EXPORTS)),--fresh-exports) \
	$(if $(RESUME),--resume $(RESUME)) $(if $(PROFILE),--profile $(PROFILE)) \
	$(if $(FLEET),--fleet $(FLEET)) $(if $(DEVICES),--devices $(DEVICES))

RUNS         ?=
PAIRS        ?=
RUN_COUNT    ?=

.PHONY: bench test lint list help report compare recommend study validate calibrate calibrate-runs mutation clean-venv clean-cache \
	install-gpu install-cpu install-tensorrt install-gpu-lean gpu-check

bench: $(STAMP)
	@$(PY) -m edgebench.bench $(BENCH_FLAGS)

# The suite on TEST_WORKERS workers (pytest-xdist), a test file per worker so that a file's shared fixtures are built
# once: the tests spend half their time waiting on child processes, so two workers on 2 cores take about two thirds
# of the time of one. Then the tests marked `alone` (timing benchmarks, A/A floors), with the machine to themselves.
TEST_WORKERS ?= 2
test: $(STAMP)
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not alone"
	@$(PY) -m pytest -p no:xdist -m alone

# Mutation testing of the harness core (bench/: statistics, timing, fidelity, CPU load, results, report,
# isolation, peak-RSS wrapper, worker). Not part of `make test`: over an hour on 2 cores.
# Resumes where it stopped; `rm -rf mutants` starts over.
mutation: $(STAMP)
	@$(PY) -m mutmut run --max-children 2 > mutants.log 2>&1 || { tail -n 20 mutants.log; exit 1; }
	@$(PY) tests/mutation_score.py

lint: $(STAMP)
	@$(PY) -m ruff check edgebench bench runtimes models compression reports fleet study tests

# Reports from stored runs (measuring nothing): make report [RUNS=results/a,results/b] -> results/report/
report: $(STAMP)
	@$(PY) -m edgebench.reports build $(RUNS) $(if $(REPORT_OUT),--out $(REPORT_OUT))

# Change per row between two runs; exits 1 on a regression beyond THRESHOLD (0.05) and the noise.
compare: $(STAMP)
	@$(PY) -m edgebench.reports compare $(BASE) $(NEW) $(if $(THRESHOLD),--threshold $(THRESHOLD)) \
		$(if $(filter 1 yes on true,$(ACROSS_MACHINES)),--across-machines)

# What to deploy: make recommend MAX_MS=10 MIN_ACCURACY=0.98 [MAX_MB= MAX_MEMORY_MB= MIN_COSINE= WHERE= OBJECTIVE=
# UNFAITHFUL=1]
recommend: $(STAMP)
	@$(PY) -m edgebench.reports recommend $(RUNS) $(if $(MAX_MS),--max-ms $(MAX_MS)) \
		$(if $(MIN_ACCURACY),--min-accuracy $(MIN_ACCURACY)) $(if $(MAX_MB),--max-mb $(MAX_MB)) \
		$(if $(MAX_MEMORY_MB),--max-memory-mb $(MAX_MEMORY_MB)) $(if $(MIN_COSINE),--min-cosine $(MIN_COSINE)) \
		$(foreach w,$(WHERE),--where '$(w)') $(if $(OBJECTIVE),--objective $(OBJECTIVE)) \
		$(if $(filter 1 yes on true,$(UNFAITHFUL)),--include-unfaithful)

# The compression survey's seven tables, measured here: MNIST ResNets, every method, 4 runtimes (README, Compression).
study: $(STAMP)
	@$(PY) -m edgebench.study $(if $(TASK),--task $(TASK)) $(if $(OUT),--out $(OUT)) $(if $(REPEATS),--repeats $(REPEATS))

# edgebench's timing against OpenVINO's benchmark_app, litert-benchmark and bare API loops, on the same files;
# then the A/A runs of `calibrate`.
validate: $(STAMP)
	@$(PY) -m edgebench.bench.validate $(if $(MODEL),--model $(MODEL)) $(if $(THREADS),--threads $(THREADS)) \
	$(if $(REPEATS),--repeats $(REPEATS)) $(if $(RUNTIMES),--runtimes $(RUNTIMES)) $(if $(OUT),--out $(OUT))

# Repeated runs of one configuration: the between-run floor `make compare`'s gate must clear on this machine.
calibrate-runs: $(STAMP)
	@$(PY) -m edgebench.bench.validate --only runs $(if $(MODEL),--model $(MODEL)) $(if $(THREADS),--threads $(THREADS)) \
	$(if $(RUN_COUNT),--runs $(RUN_COUNT)) $(if $(RUNTIMES),--runtimes $(RUNTIMES)) $(if $(OUT),--out $(OUT))

# A/A runs: pairs of processes timing one file per CPU runtime; measures and keeps this machine's A/A floor.
calibrate: $(STAMP)
	@$(PY) -m edgebench.bench.validate --only aa $(if $(MODEL),--model $(MODEL)) $(if $(THREADS),--threads $(THREADS)) \
	$(if $(PAIRS),--pairs $(PAIRS)) $(if $(RUNTIMES),--runtimes $(RUNTIMES)) $(if $(DURATION),--duration $(DURATION)) \
	$(if $(OUT),--out $(OUT))

list: $(STAMP)
	@$(PY) -m edgebench.bench --list

help: $(STAMP)
	@$(PY) -m edgebench.bench --help

# What a failed install prints: the log's tail, and one plain line when the disk filled up
# (torch's CUDA build and the runtimes take about 8 GB in .venv, plus pip's temporary copies).
INSTALL_FAILED = tail -n 25 $(VENV)/install.log; \
	if grep -q "No space left on device" $(VENV)/install.log; then \
		echo "install failed: no space left on device ($$(df -h --output=avail $(VENV) | tail -n 1 | tr -d ' ') free where $(VENV) is; a full install needs about 10 GB)"; \
	else echo "install failed: see $(VENV)/install.log"; fi; exit 1

# (Re)install when pyproject.toml changes. pip's output goes to a log, not the terminal.
$(STAMP): pyproject.toml
	@mkdir -p $(VENV)
	@echo "Setting up $(VENV) (first time: torch and the runtimes, a few minutes; log: $(VENV)/install.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@{ $(if $(filter gpu-lean,$(EXTRAS)),$(LEAN_INSTALL),$(PY) -m pip install -e '.[$(EXTRAS)]' > $(VENV)/install.log 2>&1); } \
		|| { $(INSTALL_FAILED); }
	@touch $(STAMP)

# Switch the venv between ONNX Runtime's CPU and GPU builds, leaving exactly one: both are removed first
# (they overwrite each other's files), then the chosen extra is installed and the result checked. A failed GPU
# install puts the CPU build back (the venv keeps working, and says `cpu`); TensorRT is tried last, optionally.
install-gpu install-cpu:
	@mkdir -p $(VENV)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing the $(@:install-%=%) runtimes into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip uninstall -y onnxruntime onnxruntime-gpu > $(VENV)/install.log 2>&1 || true
	@$(PY) -m pip install -e '.[dev,yolo,$(@:install-%=%)]' >> $(VENV)/install.log 2>&1 \
		|| { $(if $(filter install-gpu,$@),$(RESTORE_CPU)) $(INSTALL_FAILED); }
	@echo "dev,yolo,$(@:install-%=%)" > $(VENV)/extras
	@$(PY) -m edgebench.runtimes.onnxrt --check-one
	@touch $(STAMP)
	$(if $(filter install-gpu,$@),@$(MAKE) --no-print-directory install-tensorrt TENSORRT_OPTIONAL=1)

# What a failed GPU install does before it reports: ONNX Runtime's CPU build back in, the venv recorded as `cpu`.
RESTORE_CPU = echo "the GPU install failed: putting ONNX Runtime's CPU build back (log: $(VENV)/install-restore.log)"; \
	$(PY) -m pip uninstall -y onnxruntime onnxruntime-gpu > $(VENV)/install-restore.log 2>&1; \
	$(PY) -m pip install -e '.[dev,yolo,cpu]' >> $(VENV)/install-restore.log 2>&1 \
	&& echo "dev,yolo,cpu" > $(VENV)/extras;

# TensorRT 10 from NVIDIA's index (PyPI holds only stubs that fetch from it). Optional: where it fails, nothing
# else changes and the TensorRT rows stay `unavailable`, saying what to install.
install-tensorrt:
	@echo "Installing TensorRT 10 from $(NVIDIA_INDEX) (log: $(VENV)/install-tensorrt.log)"
	@$(PY) -m pip install --extra-index-url $(NVIDIA_INDEX) -e '.[tensorrt]' > $(VENV)/install-tensorrt.log 2>&1 \
		|| { echo "TensorRT was not installed (see $(VENV)/install-tensorrt.log; is $(NVIDIA_INDEX) reachable?): \
	its rows stay unavailable with the reason; the rest of the install is unchanged"; exit $(if $(TENSORRT_OPTIONAL),0,1); }

# On a machine whose Python already has a CUDA build of torch: a venv that sees that Python's packages, the
# project without its dependencies, and only what GPU rows need (pyproject's `gpu-lean`): no second torch and no
# CPU runtimes, so it fits in minutes. PYTHON= names that Python.
install-gpu-lean:
	@$(PYTHON) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null \
		|| { echo "install-gpu-lean needs a Python with a CUDA build of torch: $(PYTHON) has none (PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@echo "Installing the GPU rows' packages beside $(PYTHON)'s torch (log: $(VENV)/install.log)"
	@$(LEAN_INSTALL) || { $(INSTALL_FAILED); }
	@echo "gpu-lean" > $(VENV)/extras
	@touch $(STAMP)

# The lean install itself, also what a pyproject.toml change reinstalls in such a venv (never a second torch).
LEAN_INSTALL = $(PY) -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']\
	['optional-dependencies']['gpu-lean']))" > $(VENV)/gpu-lean.txt \
	&& { $(PY) -m pip install --no-deps -e . && $(PY) -m pip install -r $(VENV)/gpu-lean.txt; } > $(VENV)/install.log 2>&1

# On a machine with an NVIDIA GPU: GPU tests, a TF32 control, and cpu,gpu runs checked row by row (bench/gpu_check.py).
gpu-check: $(STAMP)
	@$(PY) -m edgebench.bench.gpu_check $(or $(OUT),results/gpu-check)

clean-venv:
	rm -rf $(VENV)

# Exported artifacts kept between runs (a warm re-run exports nothing); trained zoo models stay.
clean-cache:
	rm -rf models/.cache/artifacts
