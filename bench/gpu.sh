#!/usr/bin/env bash
# The GPU run on a lent machine without network access (python -m snnchip.bench.gpu), from the repository root:
#
#     bash bench/gpu.sh OUT_DIR [BUDGET_S [ARGS...]]
#
# Installs the wheels in .whl/ (made here by `make gpu-wheels`: the packages the machine's image lacks) into
# /tmp/site without their dependencies, then snnchip built from this tree (the prebuilt .whl/snnchip-*.whl only if
# that build fails, with a warning: it holds the code of its last `make gpu-wheels`), then starts the run with
# BUDGET_S seconds (default 420) and ARGS (--stages, --nets, --methods, --tests-k make a shorter rerun).
# PY names the Python (default python3). Writes nothing outside OUT_DIR, /tmp and the tree's build/.
set -u
out=${1:?usage: bash bench/gpu.sh OUT_DIR [BUDGET_S [ARGS...]]}
budget=${2:-420}
shift $(( $# < 2 ? $# : 2 ))
py=${PY:-python3}
# PYTHONSAFEPATH: `python -m` must not put the tree's own snnchip/ (without its stage subpackages) before /tmp/site
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 TORCHINDUCTOR_COMPILE_THREADS=1 PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
install="$py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site"
wheels=$(ls .whl/*.whl 2>/dev/null | grep -v '/snnchip-')
[ -n "$wheels" ] || { echo "gpu.sh: no wheels in .whl/ (make gpu-wheels, in the repository, first)"; exit 3; }
$install $wheels || exit 3
if $install --no-build-isolation . >/tmp/snnchip-build.log 2>&1; then
    echo "gpu.sh: snnchip built from this tree"
else
    tail -3 /tmp/snnchip-build.log
    echo "gpu.sh: WARNING: building snnchip here failed; installing the prebuilt $(ls .whl/snnchip-*.whl)"
    $install .whl/snnchip-*.whl || exit 3
fi
$py -c 'import torch, nir, snntorch, spikingjelly.activation_based, snnchip.train, snnchip.bench.gpu
print("gpu.sh: torch", torch.__version__, "CUDA", torch.version.cuda, "device:",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' || exit 3
exec $py -m snnchip.bench.gpu --out "$out" --budget "$budget" "$@"
