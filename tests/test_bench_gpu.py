"""The GPU run's plumbing on the CPU (``snnchip.bench.gpu``: stages, budget, files) and its report section
(``report.gpu_section``) against numbers worked out by hand; the method variants of ``snn-bench peers``."""

import json

import pytest
import torch

from snnchip.bench import adapters, gpu, report
from snnchip.cli import bench
from snnchip.errors import SpecError

TINY_CONV = {"input": [3, 8, 8], "widths": [4, 4, 8], "batch": 2}


def test_our_eager_variant_trains_and_graph_needs_cuda():
    model, iteration, n_bp = adapters.make_iteration("conv", TINY_CONV, 2, "ottt-a+eager", "cpu", compile=True)
    before = [p.detach().clone() for p in model.parameters()]
    iteration()
    assert n_bp == 2 and not all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    with pytest.raises(SpecError, match="needs a CUDA device"):
        adapters.make_iteration("conv", TINY_CONV, 2, "sltt+graph", "cpu")


@pytest.mark.parametrize("method", ["ottt-a", "sltt"])
def test_channels_last_weights_train_bit_for_bit_alike(method):
    """``+cl`` only changes the convolution weights' memory layout: one iteration gives the same weights."""
    runs, layouts = [], []
    for name in (method, f"{method}+cl"):
        model, iteration, _ = adapters.make_iteration("conv", TINY_CONV, 2, name, "cpu")
        iteration()
        runs.append([p.detach().contiguous() for p in model.parameters()])
        layouts.append(model.conv1.weight.is_contiguous(memory_format=torch.channels_last))
    assert layouts == [False, True] and all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize("method", ["ottt-a+nope", "sltt-k+graph", "snntorch-bptt+torch", "sj-ottt+eager"])
def test_variants_that_do_not_exist_are_refused(method, capsys):
    assert bench(["peers", "--methods", method]) == 2
    assert f"--methods: unknown '{method}'" in capsys.readouterr().err


def _row(method, T, ms, mib, total_mib, launches, fraction, impl=None):
    row = {"net": "vgg", "T": T, "method": method, "time_per_iter_s": ms / 1e3, "min_time_s": ms / 1e3,
           "peak_memory_bytes": mib * 2**20, "cuda_peak_total_bytes": total_mib * 2**20,
           "kernel_launches_per_step": launches, "fraction_of_limit": fraction}
    return {**row, "sj_implementation": impl} if impl else row


GPU_RESULT = {
    "date": "2026-11-26T00:00:00+00:00", "machine": {"device": "cuda", "gpu": "NVIDIA H100", "cpu_count": 16,
                                                      "threads": 16, "load_avg_start": [0.1]},
    "versions": {"torch": "2.11.0", "cuda": "13.0", "cudnn": 91000, "python": "3.12.3", "spikingjelly": "2.0.0",
                 "snntorch": "1.0.0"},
    "repeats": 10, "warmup": 3, "memory_kind": "cuda_max_allocated",
    "nets": {"vgg": {"input": [3, 32, 32], "widths": [64], "batch": 128}}, "throughput": {},
    "rows": [_row("ottt-a", 6, 64.0, 100, 1000, 40.5, 0.5), _row("sj-ottt", 6, 160.0, 120, 1100, 80.0, 0.2, "triton"),
             _row("sltt", 6, 50.0, 90, 900, 30.0, 0.6), _row("sj-sltt", 6, 80.0, 80, 880, 60.0, 0.4, "triton"),
             _row("ottt-a+graph", 6, 32.0, 110, 1010, 1 / 6, 0.9),
             {"net": "vgg", "T": 6, "method": "bptt", "error": "RuntimeError: boom"}],
}
ENV = {"nvidia_smi": {"driver_version": "580.1", "memory.total": "81559 MiB"}, "versions": {"triton": "3.6.0"},
       "ceilings": {"gemm_bf16_flops_per_s": 7.5e14, "copy_bytes_per_s": 3.0e12}, "tests": "60 passed in 80 s"}


def test_gpu_section_renders_the_json_with_hand_computed_figures():
    text = "\n".join(report.gpu_section(GPU_RESULT, ENV))
    assert "## GPU: NVIDIA H100" in text and "driver 580.1" in text and "bf16 GEMM 750 TFLOP/s" in text
    assert "device-to-device copy 3.00 TB/s" in text and "CUDA tests (`pytest -m cuda`): 60 passed in 80 s" in text
    # 50 000 / 128 = 390.625 iterations per epoch: 64 ms -> 25.0 s, 160 ms -> 62.5 s
    assert "| ottt-a | 64.00 | 64.00 | 100 | 1000 | 40.5 | 50 | 25.0 |" in text
    assert "| sj-ottt (triton) | 160.00 | 160.00 | 120 | 1100 | 80.0 | 20 | 62.5 |" in text
    assert "| SLTT paper, one V100 | 184.7 s, 1.71 GB | 54.5 s, 1.00 GB |" in text
    # Table 3 beside: 25.0 s and 1000 MiB = 1.05 GB; SLTT 50 ms -> 19.5 s, 900 MiB = 0.94 GB
    assert "| snnchip, NVIDIA H100 | 25.0 s, 1.05 GB | 19.5 s, 0.94 GB |" in text
    assert "| ottt-a ÷ sj-ottt time | vgg | 6 | 0.40 | ≤ 0.5 | ✓ |" in text
    assert "| ottt-a ÷ sj-ottt memory (MiB +) | vgg | 6 | 0.83 | ≤ 1 | ✓ |" in text
    assert "| sltt ÷ sj-sltt time | vgg | 6 | 0.62 | ≤ 0.5 | ✗ |" in text
    assert "| sltt ÷ sj-sltt memory (MiB +) | vgg | 6 | 1.12 | ≤ 1 | ✗ |" in text
    assert "| ottt-a+graph ÷ ottt-a time | vgg | 6 | 0.50 | (measured) | |" in text
    assert "vgg T=6 bptt: RuntimeError: boom" in text


def test_gpu_section_says_when_there_is_no_gpu_run():
    (head, _, line, _) = report.gpu_section(None)
    assert head == "## GPU" and line.startswith("Not measured yet")


def test_gpu_run_keeps_to_its_budget_and_writes_what_it_has(tmp_path, capsys):
    """A budget already spent: every configuration of the plan is recorded as skipped (none starts), in the files of
    the plan, and the report is still written."""
    for lib in ("spikingjelly", "snntorch"):
        pytest.importorskip(lib, reason=f"{lib} is not installed (make setup-bench); the peers stage needs it")
    assert gpu.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--stages", "peers,report",
                     "--budget", "0"]) == 0
    conv = json.loads((tmp_path / "peers_conv.json").read_text())
    vgg = json.loads((tmp_path / "peers_vgg.json").read_text())
    planned = {file: sum(len(Ts) * len(ms) for f, _, Ts, ms in gpu.PLAN if f == file) for file, *_ in gpu.PLAN}
    assert len(conv["rows"]) == planned["peers_conv.json"] and len(vgg["rows"]) == planned["peers_vgg.json"]
    assert all(r["error"].startswith("skipped") for r in conv["rows"] + vgg["rows"])
    assert "## GPU: cpu" in (tmp_path / "BENCHMARKS_gpu.md").read_text()


def test_gpu_run_memory_stage_writes_the_breakdown(tmp_path):
    assert gpu.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--stages", "memory"]) == 0
    rows = json.loads((tmp_path / "memory.json").read_text())["rows"]
    assert [(r["net"], r["method"]) for r in rows] == [("conv", "ottt-a")] and rows[0]["peak_bytes"] > 0
    assert "wrote" in json.loads((tmp_path / "env.json").read_text())["memory"]
    assert "ottt-a" in (tmp_path / "memory.log").read_text()


def test_gpu_run_environment_stage_measures_the_ceilings(tmp_path):
    assert gpu.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--stages", "env"]) == 0
    env = json.loads((tmp_path / "env.json").read_text())
    assert set(env["ceilings"]) == {"gemm_bf16_flops_per_s", "gemm_tf32_flops_per_s", "gemm_fp32_flops_per_s",
                                    "copy_bytes_per_s"} and min(env["ceilings"].values()) > 0
    assert env["versions"]["torch"] == torch.__version__ and "error" in env["nvidia_smi"]


def test_gpu_run_refuses_cuda_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device here" in capsys.readouterr().err


def test_a_failing_stage_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def broken(device, tiny):
        raise RuntimeError("no ceilings today")

    monkeypatch.setattr(gpu, "environment", broken)
    assert gpu.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--stages", "env,peers,report",
                     "--budget", "0", "--nets", "vgg", "--methods", "ottt-a"]) == 0
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["stage_errors"] == {"env": "RuntimeError: no ceilings today"}
    assert json.loads((tmp_path / "peers_vgg.json").read_text())["rows"][0]["method"] == "ottt-a"
    assert (tmp_path / "BENCHMARKS_gpu.md").exists() and "stages that failed" in capsys.readouterr().out
