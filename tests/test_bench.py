"""snnchip.bench: bad options refused in one line, the measurement functions on the CPU path (the CUDA path runs the
same functions), the FLOP model against hand counts, the peer harness with our own methods (no peer library
needed), the Markdown report against the committed docs, and ``--plot`` for every subcommand."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from snnchip.bench import adapters, measure, nets, report
from snnchip.cli import bench

ROOT = Path(__file__).resolve().parents[1]
TINY_CONV = {"input": [3, 8, 8], "widths": [4, 4, 8], "batch": 2}
TINY_VGG = {"input": [3, 8, 8], "widths": [4, "M", 8], "batch": 2}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("which", ["train", "hwsim", "peers"])
@pytest.mark.parametrize("bad, message", [
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--repeats", "-2"], "--repeats must be at least 1"),
    (["--warmup", "0"], "--warmup must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--T", "-3"], "--T needs positive time steps"),
    (["--T", "0,4"], "--T needs positive time steps"),
    (["--T", "abc"], "--T must be comma-separated integers"),
    (["--T", ","], "--T needs positive time steps"),
])
def test_bad_shared_options_are_one_line_and_exit_2(which, bad, message, capsys):
    assert bench([which, *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("snn-bench: error:") and message in err, err


@pytest.mark.parametrize("args, message", [
    (["train", "--methods", "bptt,nope"], "--methods: unknown 'nope'"),
    (["train", "--methods", ","], "--methods: unknown empty list"),
    (["train", "--model", "nope"], "--model: unknown 'nope'"),
    (["peers", "--methods", "ottt-a,sj-nope"], "--methods: unknown 'sj-nope'"),
    (["peers", "--model", "resnet"], "--model: unknown 'resnet'"),
    (["train", "--device", "tpu"], "--device 'tpu' is not available"),
])
def test_unknown_names_are_one_line_and_exit_2(args, message, capsys):
    assert bench(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_an_output_path_that_is_a_directory_is_refused(tmp_path, capsys):
    assert bench(["train", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- measure (CPU path)
def test_time_calls_warms_up_untimed_then_times_each_repeat():
    calls = []
    res = measure.time_calls(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(res["times_s"]) == 3
    assert res["min_time_s"] <= res["time_per_iter_s"] and res["cpu_per_iter_s"] >= 0


def test_measure_iteration_counts_memory_on_an_untimed_call_after_warm_up():
    w = torch.nn.Parameter(torch.ones(4, 4))
    model = torch.nn.Module()
    model.w = w
    x = torch.ones(8, 4, requires_grad=True)
    calls = []

    def iteration():
        calls.append(1)
        (x @ w).sum().backward()  # saves x (8·4 float32 = 128 bytes) and w (a parameter: not counted)

    res = measure.measure_iteration(model, iteration, "cpu", warmup=2, repeats=3)
    assert len(calls) == 2 + 1 + 3 and res["peak_memory_bytes"] == 8 * 4 * 4 and len(res["times_s"]) == 3
    assert measure.memory_kind("cpu") == "autograd_saved_storage_bytes"


def test_step_flops_of_the_tiny_conv_net_by_hand():
    # MACs per sample: conv1 3→4 at 8×8: 64·4·3·9 = 6912; conv2 4→4 at 8×8: 9216; (pool) conv3 4→8 at 4×4: 4608;
    # (pool, flatten 8·2·2 = 32) fc 32→10: 320. Backward: weight gradients of all, input gradients but the first.
    fwd, bwd = measure.step_flops(nets.spec("conv", TINY_CONV, 2), batch=2)
    assert fwd == 2 * 2 * (6912 + 9216 + 4608 + 320)
    assert bwd == 2 * 2 * (6912 + 2 * (9216 + 4608 + 320))


def test_vgg_is_otts_config_a_without_training_parametrisations():
    spec = nets.spec("vgg", nets.NETS["vgg"], 6)
    convs = [la.out_channels for la in spec.layers if la.op == "conv2d"]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512] and spec.input_shape == (3, 32, 32)
    assert all(not la.options for la in spec.layers) and nets.NETS["vgg"]["batch"] == 128
    ann = torch.nn.Sequential(*nets.plain_layers(spec, None))
    assert ann(torch.rand(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name, net", [("conv", TINY_CONV), ("vgg", TINY_VGG), ("mlp", {**nets.NETS["mlp"],
                                                                                          "batch": 2})])
def test_our_iteration_trains_on_every_net(name, net):
    model, iteration, n_bp = adapters.make_iteration(name, net, 2, "ottt-a", "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    iteration()
    assert n_bp == 2 and not all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_kernel_launches_count_runtime_and_graph_launches_only():
    events = [SimpleNamespace(key=k, count=c) for k, c in
              (("cudaLaunchKernel", 5), ("cuLaunchKernelEx", 2), ("cudaGraphLaunch", 1), ("aten::conv2d", 10),
               ("cudaMemcpyAsync", 3))]
    assert measure.kernel_launches(events) == 8


def test_profile_on_the_cpu_has_ops_and_no_kernel_launches():
    _, iteration, _ = adapters.make_iteration("conv", TINY_CONV, 2, "sltt", "cpu")
    prof = measure.profile(iteration, 2, "cpu", top=5)
    assert len(prof["ops"]) == 5 and prof["kernel_launches_per_step"] == 0 and prof["ops_per_step"] > 0
    assert 0 < sum(o["share"] for o in prof["ops"]) <= 1 + 1e-9


# ------------------------------------------------------------------------------------------- peers, ours only
# What report.markdown reads from a result: a change here is a change of the JSON contract.
RESULT_FIELDS = {"date", "machine", "versions", "repeats", "warmup", "memory_kind", "nets", "throughput", "rows"}
MACHINE_FIELDS = {"cpu_count", "threads", "load_avg_start", "load_avg_end"}
THROUGHPUT_FIELDS = {"step_forward_flops", "step_backward_flops", "layers_flops_per_s", "layers_flops_per_s_best",
                     "gemm_flops_per_s", "gemm_flops_per_s_best"}
ROW_FIELDS = {"net", "T", "method", "time_per_iter_s", "min_time_s", "cpu_per_iter_s", "peak_memory_bytes",
              "fraction_of_limit", "fraction_of_limit_best", "fraction_of_limit_cpu"}


def test_peers_with_our_methods_writes_json_markdown_and_plot(tmp_path, capsys):
    out, md, png = tmp_path / "peers.json", tmp_path / "BENCHMARKS.md", tmp_path / "peers.png"
    assert bench(["peers", "--model", "mlp", "--batch-size", "2", "--T", "2", "--methods", "ottt-a,bptt",
                  "--repeats", "2", "--warmup", "1", "--threads", "1", "--no-compile", "--json", str(out),
                  "--markdown", str(md), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    assert RESULT_FIELDS <= set(result) and MACHINE_FIELDS <= set(result["machine"])
    assert {"torch", "python", "spikingjelly", "snntorch"} <= set(result["versions"])
    assert THROUGHPUT_FIELDS <= set(result["throughput"]["mlp"])
    assert result["nets"] == {"mlp": {"input": [784], "widths": [512, 512], "batch": 2}}
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"ottt-a", "bptt"} and all(ROW_FIELDS <= set(r) for r in rows.values()), result["rows"]
    # 784→512→512→10 at batch 2: forward 2·2·(784·512 + 512·512 + 512·10) FLOPs per step
    assert result["throughput"]["mlp"]["step_forward_flops"] == 2 * 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert rows["ottt-a"]["n_bp"] == 2 and rows["bptt"]["peak_memory_bytes"] > rows["ottt-a"]["peak_memory_bytes"]
    text = md.read_text()
    for method, r in rows.items():
        assert (f"| {method} | {r['time_per_iter_s']:.3f} | {r['min_time_s']:.3f} | {r['cpu_per_iter_s']:.3f} | "
                f"{r['peak_memory_bytes'] / 2**20:.1f} | {100 * r['fraction_of_limit']:.0f} |") in text
    assert "## `mlp`: input (784,), widths (512, 512), batch 2" in text
    assert png.read_bytes().startswith(PNG)


def test_the_committed_report_is_what_the_committed_json_renders(tmp_path):
    d = ROOT / "docs" / "benchmarks"
    jsons = [d / f for f in ("peers_mlp.json", "peers_conv_T4_16.json", "peers_conv_T32.json")]
    jsons += sorted(d.glob("profile_*.json"))
    gpu = ROOT / "docs" / "gpu"
    jsons += [gpu / f for f in ("peers_vgg.json", "peers_conv.json", "env.json")]
    out = tmp_path / "BENCHMARKS.md"
    assert report.main([*map(str, jsons), "--notes", str(d / "peers_findings.md"), "--gpu-notes",
                        str(gpu / "notes.md"), "--out", str(out)]) == 0
    assert out.read_text() == (ROOT / "docs" / "BENCHMARKS.md").read_text()


def test_report_refuses_a_json_without_results(tmp_path, capsys):
    prof = tmp_path / "profile.json"
    prof.write_text(json.dumps({"ops": []}))
    assert report.main([str(prof), "--out", str(tmp_path / "x.md")]) == 2
    assert "no result JSON" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- hwsim
@pytest.mark.lava
@pytest.mark.slow
def test_hwsim_bench_reports_speed_bit_exactness_and_plots(tmp_path, monkeypatch):
    from nir_nets import mlp_graph

    from snnchip.bench import hwsim

    monkeypatch.setattr(hwsim, "networks", lambda T: {"tiny": mlp_graph((6, 8, 3), T=T, gain=2.5)})
    out, png = tmp_path / "hw.json", tmp_path / "hw.png"
    assert bench(["hwsim", "--T", "3", "--batch-size", "4", "--repeats", "1", "--warmup", "1", "--json", str(out),
                  "--plot", str(png)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["bit_exact"] is True and row["lava_samples"] == 4 and row["neurons"] == 11
    assert {"sim_s_per_sample_step_b4", "lava_s_per_sample_step", "speedup_b4"} <= set(row)
    assert png.read_bytes().startswith(PNG)


def test_deploy_bench_trains_exports_and_times_a_conv_net_on_cifar_files(tmp_path, monkeypatch):
    """``snn-bench deploy`` end to end (the digits convnet at 3×32×32 stands in for VGG-11): training on
    CIFAR-10-format files, the export as its own process, sizes, the chip/float ratio, Lava = chip on one sample."""
    from snnchip.bench import deploy

    monkeypatch.setattr(deploy, "MODELS", {"vgg": ("convnet", "ottt-a", 2)})
    out = tmp_path / "deploy.json"
    assert bench(["deploy", "--model", "vgg", "--T", "2", "--batch-size", "4", "--max-steps", "1", "--repeats", "1",
                  "--lava-samples", "1", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["export_exit"] == 0 and 0 < row["export_peak_rss_gib"] < 8
    # conv1 3->16 (3x3) + conv2 16->32 (3x3, the pooling composed into it) + out: kernels stored once
    assert row["stored_weights"] < row["connections"] and row["cores"] >= 1 and row["chips"] == 1
    assert row["deploy_dir_over_weights"] > 1 and row["chip_over_float"] > 0 and row["batch"] == 4
    assert row["lava_equals_chip"] is True and row["lava_steps"] > 2  # T + the pipeline's latency


def test_synthetic_cifar_files_read_as_cifar10(tmp_path):
    from snnchip.bench.deploy import SYNTHETIC_PER_BATCH, write_synthetic_cifar
    from snnchip.train.data import load_dataset

    ds = load_dataset("cifar10", write_synthetic_cifar(tmp_path))
    assert ds.x_train.shape == (5 * SYNTHETIC_PER_BATCH, 3, 32, 32) and ds.x_test.shape[0] == SYNTHETIC_PER_BATCH
