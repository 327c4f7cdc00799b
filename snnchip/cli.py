"""The CLI face: ``snn-train``, ``snn-export``, ``snn-run``, ``snn-validate``, ``snn-bench``, ``snn-pipeline``.

Each command is a thin wrapper: this module owns the argument contract (DESIGN.md, "CLI contracts")
and imports the stage that does the work lazily, inside the command. It is the only core module
that imports stages. Any ``SnnchipError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from snnchip import __version__, interrupts
from snnchip.errors import SnnchipError

Handler = Callable[[argparse.Namespace], int]


def _parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s (snnchip) {__version__}")
    return p


def _stage(module: str, func: str) -> Handler:
    """Resolve ``module.func`` lazily; a stage that is not built yet says so plainly."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            raise SnnchipError(f"{module} is not available in this snnchip build") from None
        raise
    handler = getattr(mod, func, None)
    if handler is None:
        raise SnnchipError(f"{module}.{func} is not available in this snnchip build")
    return handler


def _main(parser: argparse.ArgumentParser, route: Callable[[argparse.Namespace], Handler],
          argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        with interrupts.sigterm_raises():
            return int(route(args)(args) or 0)
    except SnnchipError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except interrupts.INTERRUPTS as exc:
        code, word = interrupts.exit_status(exc)
        print(f"{parser.prog}: {word}", file=sys.stderr)
        return code


def add_interpretation_arguments(p: argparse.ArgumentParser) -> None:
    """How a foreign NIR graph is read in discrete time (see ``snnchip.spec.Interpretation``).

    Our own graphs carry their exact semantics in ``metadata['snnchip']`` and ignore these. A foreign
    graph re-exported by snnchip records the interpretation it was exported with; options given here
    override it, options left out keep it (or NIR's defaults when nothing is recorded).
    """
    g = p.add_argument_group("interpretation of foreign NIR graphs")
    g.add_argument("--dt", type=float, default=None, help="time step for continuous-time NIR neurons (default 1)")
    g.add_argument("--discretization", choices=["euler", "exact"], default=None,
                   help="forward Euler (default) or exact exponential decay")
    g.add_argument("--reset", choices=["v_reset", "zero", "subtract"], default=None,
                   help="reset after a spike: NIR's reset to v_reset (default), to zero, or subtract θ")
    g.add_argument("--spike-compare", choices=["gt", "ge"], default=None,
                   help="spike when v > θ (NIR, default) or v >= θ")


def interpretation_from_args(args: argparse.Namespace, recorded=None):  # -> Interpretation | None
    """The interpretation the options ask for, on top of ``recorded`` (or NIR's defaults); None if none given."""
    from dataclasses import replace

    from snnchip.spec import Interpretation

    given = {"dt": args.dt, "discretization": args.discretization, "reset": args.reset,
             "compare": args.spike_compare}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return recorded
    return replace(recorded or Interpretation(), **given)


# ---------------------------------------------------------------------------------------- snn-train
def train_parser() -> argparse.ArgumentParser:
    p = _parser(
        "snn-train",
        "Train a spiking network with BPTT or an online rule (OTTT, SLTT, SAF, EM-PF, event-driven BP).",
        "  snn-train --dataset digits --model mlp --method ottt-a --T 6 --epochs 20 --out runs/mlp\n"
        "  snn-train --dataset digits --model convnet --method sltt-k --k 2 --T 6 --out runs/conv\n"
        "  snn-train --dataset mnist --data-dir ~/data/mnist --model mlp --hidden 400 --method saf-e --out r\n"
        "  snn-train --dataset digits --model convnet --method empf --empf-variant bn --T 4 --out runs/empf\n"
        "  snn-train --dataset digits --model mlp --method edbp --T 5 --optimizer adamw --lr 5e-4 --out runs/edbp\n",
    )
    p.add_argument("--dataset", default="digits", help="digits (embedded, default), mnist, fashion-mnist, "
                   "cifar10, dvs")
    p.add_argument("--data-dir", default=None, help="directory with the local dataset files")
    p.add_argument("--model", default="mlp", help="mlp, convnet, vgg, mlp-feedback, resnet18, ...")
    p.add_argument("--hidden", default="128", help="comma-separated hidden widths for mlp (default 128)")
    p.add_argument("--method", default="ottt-a", help="bptt, ottt-o, ottt-a, sltt, sltt-k, saf-e, saf-f, "
                   "empf, edbp")
    p.add_argument("--T", type=int, default=6, help="time steps (default 6)")
    p.add_argument("--k", type=int, default=None, help="SLTT-K: steps with backward per batch")
    p.add_argument("--empf-variant", choices=["vanilla", "learnable", "bn", "parallel", "mixed"], default="bn",
                   help="EM-PF neuron: fixed λ/θ, learnable per-step λ[t]/θ[t], + membrane BN (default), parallel, "
                   "mixed (resnet18 blocks: first neuron parallel, second bn)")
    p.add_argument("--random-bp", action="store_true", help="EM-PF: backward at one random step per batch")
    p.add_argument("--seca", choices=["none", "i", "ii"], default="none", help="EM-PF channel attention (conv)")
    p.add_argument("--binary-first-last", action="store_true",
                   help="EM-PF: binarise the first and last synaptic layers too (default: full precision)")
    p.add_argument("--tau-m", type=float, default=None, help="edbp: SRM τm (default: Table S1 row of the dataset)")
    p.add_argument("--tau-s", type=float, default=None, help="edbp: SRM τs (default: Table S1)")
    p.add_argument("--tau-grad", type=float, default=None, help="edbp: backward kernel h = e^(−t/τ_grad) "
                   "(default: Table S1)")
    p.add_argument("--targets", default=None, help="edbp: target spike counts N_correct,N_wrong of the output "
                   "neurons (default: Table S1, 5,1 for digits/MNIST)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default depends on optimizer)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--mse-alpha", type=float, default=0.05, help="loss (1-α)·CE + α·MSE (default 0.05)")
    p.add_argument("--encoding", choices=["direct", "rate"], default="direct")
    p.add_argument("--lam", type=float, default=None, help="LIF leak λ (default per method)")
    p.add_argument("--theta", type=float, default=1.0, help="threshold θ (default 1)")
    p.add_argument("--reset", choices=["subtract", "zero"], default="subtract")
    p.add_argument("--spike", choices=["ge", "gt"], default="ge")
    p.add_argument("--no-bias", dest="bias", action="store_false",
                   help="synaptic layers without bias (needed by --target netx, whose biases act from step 1)")
    p.add_argument("--surrogate", choices=["sigmoid", "triangle", "rectangle"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")
    p.add_argument("--nproc", type=int, default=1, help="run N data-parallel processes on this machine via "
                   "torchrun (--batch-size is the global batch); multi-node: torchrun -m snnchip.train.cli")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    p.add_argument("--compile", action="store_true", help="fuse the LIF step's element-wise work with torch.compile "
                   "(CPU: needs a C++ compiler; costs seconds once, then ≈ 10 %% faster conv-net iterations)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer iterations")
    p.add_argument("--resume", action="store_true", help="resume exactly from OUT/model.pt")
    p.add_argument("--out", required=True, help="run directory (model.pt, metrics.json, curves.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def train(argv: Sequence[str] | None = None) -> int:
    return _main(train_parser(), lambda a: _stage("snnchip.train.cli", "run"), argv)


# --------------------------------------------------------------------------------------- snn-export
EXPORT_TARGETS = ("nir", "loihi", "onnx", "netx")


def export_parser() -> argparse.ArgumentParser:
    p = _parser(
        "snn-export",
        "Export a trained model.pt (or a .nir graph) to NIR, a Loihi 2 deploy directory, ONNX or netx HDF5.",
        "  snn-export runs/mlp/model.pt --target nir -o model.nir\n"
        "  snn-export runs/mlp/model.pt --target loihi -o deploy/mlp\n"
        "  snn-export runs/mlp/model.pt --target loihi --calibrate --calibrate-epochs 3 -o deploy/mlp\n"
        "  snn-export snntorch_graph.nir --target loihi --reset zero -o deploy/foreign\n"
        "  snn-export runs/mlp/model.pt --target onnx -o model.onnx\n"
        "  snn-export graph.nir --target netx --T 25 -o net.net  (reset to zero, >, no bias; lava-dl netx loads it)\n",
    )
    p.add_argument("model", help="model.pt written by snn-train, or a .nir graph")
    p.add_argument("--target", choices=EXPORT_TARGETS, required=True)
    p.add_argument("-o", "--out", required=True, help="output file (nir, onnx, netx) or directory (loihi)")
    p.add_argument("--T", type=int, default=None, help="time steps for a foreign .nir graph")
    add_interpretation_arguments(p)
    cal = p.add_argument_group("calibration (--target loihi, model.pt)")
    cal.add_argument("--calibrate", action="store_true", help="fine-tune with the chip's quantized weights in the "
                     "forward pass (straight-through) before exporting; writes DIR/model.calibrated.pt and "
                     "DIR/calibration.json (float and bit-exact chip accuracy before/after)")
    cal.add_argument("--calibrate-epochs", type=int, default=3, help="calibration epochs (default 3)")
    cal.add_argument("--calibrate-lr", type=float, default=2e-4, help="calibration learning rate, Adam (default 2e-4)")
    cal.add_argument("--dataset", default="digits", help="calibration data and test set (default digits)")
    cal.add_argument("--data-dir", default=None, help="local dataset files (see snn-train --dataset)")
    return p


def export(argv: Sequence[str] | None = None) -> int:
    return _main(export_parser(), lambda a: _stage("snnchip.hw_sim.calibrate", "cli_calibrate") if a.calibrate
                 else _stage("snnchip.export.cli", "run"), argv)


# ------------------------------------------------------------------------------------------ snn-run
RUN_BACKENDS = {
    "reference": ("snnchip.export.cli", "run_graph"),
    "chip": ("snnchip.hw_sim.cli", "run_graph"),
    "lava": ("snnchip.deploy.cli", "run_graph"),
}


def run_parser() -> argparse.ArgumentParser:
    p = _parser(
        "snn-run",
        "Run a NIR graph or a deploy directory on inputs [T, batch, *features]; write outputs and spikes.",
        "  snn-run model.nir --input x.npy --out y.npz\n"
        "  snn-run deploy/mlp --input x.npy --out y.npz --backend chip\n"
        "  snn-run deploy/mlp --input x.npy --out y.npz --backend lava --lava-cfg fixed_pt\n",
    )
    p.add_argument("graph", help="a .nir file or a deploy directory from snn-export --target loihi")
    p.add_argument("--input", required=True, help=".npy array of shape [T, batch, *features]")
    p.add_argument("--out", required=True, help=".npz with 'output' [T, batch, n_out] and 'spikes/<layer>'")
    p.add_argument("--backend", choices=list(RUN_BACKENDS), default="reference")
    p.add_argument("--lava-cfg", choices=["fixed_pt", "floating_pt"], default="fixed_pt")
    add_interpretation_arguments(p)
    return p


def run(argv: Sequence[str] | None = None) -> int:
    return _main(run_parser(), lambda a: _stage(*RUN_BACKENDS[a.backend]), argv)


# ------------------------------------------------------------------------------------- snn-validate
def validate_parser() -> argparse.ArgumentParser:
    p = _parser(
        "snn-validate",
        "Run the equivalence ladder: float model = NIR reference; float vs bit-exact chip; chip = Lava.",
        "  snn-validate runs/mlp/model.pt --dataset digits --json report.json --plots plots/\n"
        "  snn-validate deploy/mlp --dataset digits --samples 200 --lava-samples 5 --json r.json\n",
    )
    p.add_argument("model", help="model.pt or a deploy directory")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--samples", type=int, default=None, help="samples on the bit-exact chip (default: test set)")
    p.add_argument("--lava-samples", type=int, default=20, help="samples run in Lava (default 20)")
    p.add_argument("--json", default=None, help="write the report as JSON here")
    p.add_argument("--plots", default=None, help="directory for the plots")
    p.add_argument("--min-agreement", type=float, default=0.98, help="class-decision agreement gate")
    return p


def validate(argv: Sequence[str] | None = None) -> int:
    return _main(validate_parser(), lambda a: _stage("snnchip.hw_sim.cli", "validate"), argv)


# ---------------------------------------------------------------------------------------- snn-bench
BENCHES = {
    "train": ("snnchip.train.bench", "run"),
    "peers": ("snnchip.cli", "peers_from_checkout"),
    "hwsim": ("snnchip.hw_sim.bench", "run"),
}
# Defaults that differ per benchmark (the parser's are None): peers runs both of its nets at their own batch sizes.
BENCH_DEFAULTS = {
    "train": {"model": "mlp", "methods": "bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f", "batch_size": 32},
    "peers": {"model": "conv,mlp", "methods": "all"},
    "hwsim": {"batch_size": 32},
}


def peers_from_checkout(args: argparse.Namespace) -> int:
    """``snn-bench peers`` runs ``bench/peers.py`` of the repository checkout (bench/ is not installed)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "peers.py"
    if not path.is_file():
        raise SnnchipError(f"snn-bench peers needs a snnchip repository checkout (editable install): {path} "
                           f"does not exist")
    spec = importlib.util.spec_from_file_location("snnchip_bench_peers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(args)


def bench_parser() -> argparse.ArgumentParser:
    p = _parser(
        "snn-bench",
        "Benchmarks (time per iteration, peak memory, simulator speed); tables, plots and --json output.",
        "  snn-bench train --model mlp --methods bptt,ottt-a,sltt --T 4,8,16,32 --json out.json\n"
        "  snn-bench hwsim --json hwsim.json\n"
        "  snn-bench peers --model conv --T 4,16 --json peers.json --plot peers.png --markdown docs/BENCHMARKS.md\n"
        "    (peers: from a repository checkout with `make setup-bench`; SpikingJelly and snnTorch side by side)\n",
    )
    p.add_argument("which", choices=list(BENCHES))
    p.add_argument("--model", default=None, help="train: a zoo model (default mlp); peers: conv,mlp (default both)")
    p.add_argument("--methods", default=None, help="train: default bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f; "
                   "peers: all (default), ours, peers, or a list")
    p.add_argument("--T", default="4,8,16,32", help="comma-separated time steps")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (peers: 32 conv, 128 mlp)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="peers: torch threads (default: torch's)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="peers: our rules with eager LIF kernels (default: torch.compile'd, as snn-train --compile)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--markdown", default=None, help="peers: write the Markdown report (docs/BENCHMARKS.md)")
    return p


def _bench_route(args: argparse.Namespace) -> Handler:
    for key, value in BENCH_DEFAULTS[args.which].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return _stage(*BENCHES[args.which])


def bench(argv: Sequence[str] | None = None) -> int:
    return _main(bench_parser(), _bench_route, argv)


# ------------------------------------------------------------------------------------- snn-pipeline
def pipeline_parser() -> argparse.ArgumentParser:
    p = _parser(
        "snn-pipeline",
        "Train -> export -> validate from one TOML config, everything under one run directory.",
        "  snn-pipeline configs/demo.toml\n  snn-pipeline configs/demo.toml --out runs/demo2\n",
    )
    p.add_argument("config", help="TOML config (see configs/)")
    p.add_argument("--out", default=None, help="run directory (default: from the config)")
    return p


def pipeline(argv: Sequence[str] | None = None) -> int:
    return _main(pipeline_parser(), lambda a: _stage("snnchip.hw_sim.pipeline", "run"), argv)
