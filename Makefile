# snnchip: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.snnchip-setup
TORCH  ?= torch==2.13.0
LAVA   := lava-nc==0.10.0

.PHONY: setup test demo lint clean

setup: $(STAMP)

# Torch first (a CPU build here; a CUDA user installs their own torch beforehand and the range in
# pyproject.toml accepts it), then the project (with xylosim, built from source: ~1 min with g++), then lava-nc without
# its declared Python <3.11 pin.
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "snnchip needs Python >= 3.10"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,onnx,xylo]"
	$(BIN)/python -m pip install -q --ignore-requires-python --no-deps "$(LAVA)"
	$(BIN)/python -m pip install -q --ignore-requires-python --no-deps "lava-dl==0.6.0"
	$(BIN)/python -c 'import snnchip.lava_compat as c; c.import_lava(); print("setup ok:", c.versions())'
	$(BIN)/python -c 'import xylosim.v2; print("xylosim ok")'
	touch $(STAMP)

# The peer libraries of `snn-bench peers`, pinned in pyproject's `bench` extra, without their declared
# dependencies (they would replace our torch); not part of `setup` (CI does not need them).
.PHONY: setup-bench
setup-bench: setup
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))' \
		| xargs $(BIN)/python -m pip install -q --no-deps
	$(BIN)/python -c 'import torch, snntorch, spikingjelly.activation_based; print("setup-bench ok: torch", torch.__version__)'

# The wheels bench/gpu.sh installs on a lent GPU machine without network (CPython 3.12, x86-64): the bench extra,
# nir and nirtorch at the versions installed here, and snnchip's own wheel (its fallback). Rerun after every change
# that the GPU run should see in that fallback (bench/gpu.sh normally builds snnchip from the tree it is given).
.PHONY: gpu-wheels
gpu-wheels: setup
	rm -rf .whl && mkdir -p .whl
	$(BIN)/python -c 'import tomllib, importlib.metadata as m; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"] + [f"{n}=={m.version(n)}" for n in ("nir", "nirtorch")]))' \
		| xargs $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w .whl .
	rm -rf build
	ls -l .whl

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/snn-pipeline configs/demo.toml --overwrite

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache
