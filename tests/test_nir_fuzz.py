"""Damaged NIR files and inconsistent graphs raise NIRFormatError / UnsupportedNodeError, never anything else."""

import os
import tempfile

import h5py
import nir
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnchip.errors import DataError, NIRFormatError, UnsupportedNodeError
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import spec_to_nir, write_nir
from snnchip.export.nir_graph import check_graph
from snnchip.export.nir_read import read_graph
from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronSpec

OURS = (NIRFormatError, UnsupportedNodeError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_bytes() -> bytes:
    spec = NetworkSpec(input_shape=(1, 4, 4), T=2, num_classes=2, feedback=(FeedbackSpec("h", "h"),), layers=(
        LayerSpec("c", "conv2d", out_channels=2, kernel_size=3, padding=1, neuron=NeuronSpec()),
        LayerSpec("p", "sumpool", kernel_size=2), LayerSpec("f", "flatten"),
        LayerSpec("h", "linear", out_features=3, neuron=NeuronSpec()),
        LayerSpec("o", "linear", out_features=2, neuron=NeuronSpec(kind="readout"))))
    rng = np.random.default_rng(0)
    params = {"c": {"weight": rng.normal(size=(2, 1, 3, 3)), "bias": rng.normal(size=2)},
              "h": {"weight": rng.normal(size=(3, 8)), "bias": rng.normal(size=3)},
              "o": {"weight": rng.normal(size=(2, 3)), "bias": rng.normal(size=2)},
              "feedback.h__h": {"weight": rng.normal(size=(3, 3))}}
    with tempfile.TemporaryDirectory() as d:
        write_nir(spec_to_nir(spec, params), os.path.join(d, "g.nir"))
        with open(os.path.join(d, "g.nir"), "rb") as fh:
            return fh.read()


VALID = _valid_bytes()
NODE_NAMES = ["c", "c_neuron", "p", "f", "h", "h_neuron", "feedback_h__h", "o", "o_neuron", "input", "output"]


def _read_and_run(path: str) -> None:
    """Reading either fails with our errors, or yields a graph the executor runs (or refuses) with our errors."""
    try:
        graph = read_graph(path)
        NIRExecutor(graph).run(np.ones((2, 1, 1, 4, 4)))
    except (*OURS, DataError):
        pass


def _with_file(data: bytes, edit=None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.nir")
        with open(path, "wb") as fh:
            fh.write(data)
        if edit is not None:
            with h5py.File(path, "r+") as f:
                edit(f["node"])
        _read_and_run(path)


@FUZZ
@given(st.integers(0, len(VALID) - 1))
def test_truncated_file(cut):
    _with_file(VALID[:cut])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flipped_file(flips):
    data = bytearray(VALID)
    for pos, bit in flips:
        data[pos] ^= 1 << bit
    _with_file(bytes(data))


@FUZZ
@given(st.sampled_from(NODE_NAMES),
       st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=12))
def test_unknown_node_type_is_unsupported(node, type_name):
    def edit(root):
        del root["nodes"][node]["type"]
        root["nodes"][node].create_dataset("type", data=type_name, dtype=h5py.string_dtype())

    known = type_name in {"Input", "Output", "NIRGraph", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d",
                          "AvgPool2d", "Flatten", "Delay", "Threshold", "LIF", "IF", "LI", "I", "CubaLIF", "CubaLI"}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.nir")
        with open(path, "wb") as fh:
            fh.write(VALID)
        with h5py.File(path, "r+") as f:
            edit(f["node"])
        try:
            read_graph(path)
        except UnsupportedNodeError as exc:
            assert not known and repr(node) in str(exc)
        except NIRFormatError:
            assert known


@FUZZ
@given(st.sampled_from(NODE_NAMES), st.data())
def test_missing_field(node, data):
    def edit(root):
        group = root["nodes"][node]
        fields = sorted(k for k in group.keys())
        field = data.draw(st.sampled_from(fields))
        del group[field]
        if field == "metadata" or (field == "bias" and node == "c"):  # optional-looking fields may still read
            return
    _with_file(VALID, edit)


def _dense(n_in: int, n_out: int) -> np.ndarray:
    return np.ones((n_out, n_in))


@settings(max_examples=120, deadline=None)
@given(n_in=st.integers(1, 5), w_in=st.integers(1, 5), w_out=st.integers(1, 4), lif_n=st.integers(1, 5),
       out_n=st.integers(1, 5), dangling=st.booleans(), bad_tau=st.booleans())
def test_inconsistent_shapes_and_edges(n_in, w_in, w_out, lif_n, out_n, dangling, bad_tau):
    lif = nir.LIF(tau=np.full(lif_n, -1.0 if bad_tau else 2.0), r=np.ones(lif_n), v_leak=np.zeros(lif_n),
                  v_threshold=np.ones(lif_n), v_reset=np.zeros(lif_n))
    nodes = {"input": nir.Input(np.array([n_in])), "fc": nir.Linear(_dense(w_in, w_out)), "lif": lif,
             "output": nir.Output(np.array([out_n]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")] + ([("lif", "ghost")] if dangling else [])
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    consistent = n_in == w_in and lif_n in (1, w_out) and w_out == out_n and not dangling and not bad_tau
    try:
        check_graph(graph)
        assert consistent
        NIRExecutor(graph).run(np.ones((2, 1, n_in)))
    except NIRFormatError as exc:
        assert not consistent
        assert any(repr(n) in str(exc) for n in ("fc", "lif", "output", "ghost"))


OFFSET = st.sampled_from([0, 0, 0, 1, -1])


@settings(max_examples=150, deadline=None)
@given(c_in=st.integers(1, 3), size=st.integers(1, 9), k=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.integers(0, 2), pool=st.integers(1, 3), off_cin=OFFSET, off_decl=OFFSET, off_flat=OFFSET, off_fc=OFFSET)
def test_conv_pool_flatten_shapes_agree_with_torch(c_in, size, k, stride, pad, pool, off_cin, off_decl, off_flat,
                                                   off_fc):
    """check_graph accepts exactly the graphs whose layers torch can chain (torch is the shape oracle)."""
    import torch
    import torch.nn.functional as F

    w = np.ones((2, max(1, c_in + off_cin), k, k))
    try:
        numel = F.avg_pool2d(F.conv2d(torch.zeros(1, c_in, size, size), torch.as_tensor(w).float(), stride=stride,
                                      padding=pad), pool, pool)[0].numel()
    except RuntimeError:
        numel = 0
    declared, flat, fc_in = max(1, size + off_decl), max(1, numel + off_flat), max(1, numel + off_fc)
    ok = numel > 0 and declared == size and flat == numel and fc_in == numel
    nodes = {"input": nir.Input(np.array([c_in, size, size])),
             "conv": nir.Conv2d(input_shape=(declared, declared), weight=w, stride=stride, padding=pad, dilation=1,
                                groups=1, bias=np.zeros(2)),
             "pool": nir.AvgPool2d(kernel_size=np.array([pool, pool]), stride=np.array([pool, pool]),
                                   padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([flat])}, start_dim=0, end_dim=-1),
             "fc": nir.Linear(np.ones((3, fc_in))), "output": nir.Output(np.array([3]))}
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:], strict=False)), type_check=False)
    try:
        check_graph(graph)
        assert ok
        assert NIRExecutor(graph).run(np.ones((1, 2, c_in, size, size))).output.shape == (1, 2, 3)
    except NIRFormatError as exc:
        assert not ok, exc
        assert any(repr(n) in str(exc) for n in names)
