# The README's commands live here. Everything installs into .venv from a fresh machine.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# CPU wheel (a plain `torch` would pull several GB of CUDA packages on machines without CUDA).
TORCH_CPU := torch==2.13.0
# The CPU interpreter needs triton>=3.9 with numpy 2.x (triton 3.6's interpreter breaks on numpy 2.4).
TRITON_CPU := triton>=3.9
LIGHTLY := lightly==1.6.0
PYTEST_ARGS ?=

.PHONY: demo test bench gpu install clean
.DEFAULT_GOAL := demo

$(VENV)/.installed: setup.py pyproject.toml Makefile
	$(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	@# Keep a CUDA torch that is already present; otherwise install the pinned CPU build.
	if $(VPY) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then \
		echo "using the CUDA-enabled torch already present"; \
	else \
		$(VPY) -m pip install -q "$(TORCH_CPU)" "$(TRITON_CPU)" "numpy>=2"; \
	fi
	$(VPY) -m pip install -q -e ".[test,bench,dali]"
	@# lightly is the independent oracle in the tests; --no-deps keeps torchvision out.
	$(VPY) -m pip install -q --no-deps "$(LIGHTLY)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/sslfast env
	$(VENV)/bin/sslfast bench losses --quick

test: install
	TRITON_INTERPRET=1 $(VPY) -m pytest $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/sslfast bench losses

# On a CUDA machine that already has torch+triton (no registry access): the GPU runbook for a
# 15-minute lease (GPU_RUN="--call 1", then "--call 2"; "--dry-run" shows the plan; bench/README.md).
GPU_RUN ?= --dry-run
gpu:
	bash bench/gpu_run.sh $(GPU_RUN)

# The lent GPU's stack on a CPU: torch 2.11 (the PyPI build, ~5 GB with its CUDA libraries) and
# triton 3.6, whose interpreter needs numpy < 2.4. Runs the suite there before device time is spent.
COMPAT_VENV ?= .compat
.PHONY: compat
compat:
	test -x $(COMPAT_VENV)/bin/python || $(PY) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q "torch==2.11.0" "triton==3.6.*" "numpy>=2,<2.4"
	$(COMPAT_VENV)/bin/python -m pip install -q -e ".[test,bench]" "torch==2.11.0" "numpy>=2,<2.4"
	$(COMPAT_VENV)/bin/python -m pip install -q --no-deps "$(LIGHTLY)"
	TRITON_INTERPRET=1 $(COMPAT_VENV)/bin/python -m pytest $(PYTEST_ARGS)
	env -u TRITON_INTERPRET $(COMPAT_VENV)/bin/sslfast bench gate --full

# The static sm_90a gate (no GPU needed): every Triton kernel variant the launchers choose, compiled
# with the wheel's ptxas and checked for smem, spills, tensor cores, fp64 scalars and one full wave
# (sslfast/benchmarks/gpu_gate.py). Non-zero exit on a failure outside KNOWN_FAILURES.
.PHONY: gate
gate: install
	env -u TRITON_INTERPRET $(VENV)/bin/sslfast bench gate --full

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build dist *.egg-info

# bench/report/report.md + plots from bench/results/*.json; regenerates the README's results section.
.PHONY: report
report: install
	$(VENV)/bin/sslfast report --results bench/results --out bench/report --readme README.md
