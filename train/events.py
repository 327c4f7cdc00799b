"""Event datasets, read from the files as their publishers distribute them and binned into T frames.

Readers of the published formats (written from the format specifications; tonic is not used: docs/datasets.md
says why). Every field is checked; a bad file is one ``DataError`` naming it.

- ``nmnist`` (Orchard et al., "Converting Static Image Datasets to Spiking Neuromorphic Datasets Using Saccades",
  2015): ``Train/`` and ``Test/``, or the published ``Train.zip`` / ``Test.zip`` read in place, one folder per digit
  of ``.bin`` files. An event is 40 bits: byte 0 x, byte 1 y, bit 23 polarity (1 = ON), bits 22..0 the time in µs
  (big-endian); 34×34 sensor. An event with y = 240 is a time-overflow marker that adds 2^13 µs to the events
  after it, as in the publishers' reader.
- ``dvsgesture`` (Amir et al., "A Low Power, Fully Event-Based Gesture Recognition System", CVPR 2017): the
  extracted ``DvsGesture/`` folder. ``trials_to_train.txt`` / ``trials_to_test.txt`` list the AEDAT 3.1 recordings
  ``userNN_<lighting>.aedat``; each row of ``userNN_<lighting>_labels.csv`` (class 1..11, startTime_usec,
  endTime_usec) is one sample: the recording's events with start <= t < end. 128×128.
- ``cifar10dvs`` (Li et al., "CIFAR10-DVS: An Event-Stream Dataset for Object Classification", 2017):
  ``<class>/cifar10_<class>_<i>.aedat``, or the published ``<class>.zip`` read in place; AEDAT 2.0 recordings of
  a DVS128. There is no official split: samples i = 0..99 of each class are the test set, 100..999 the training
  set (the split of "Temporal Effective Batch Normalization in Spiking Neural Networks", NeurIPS 2022).
- ``shd`` (Cramer et al., "The Heidelberg Spiking Data Sets for the Systematic Evaluation of Spiking Neural
  Networks", arXiv:1910.07407): ``shd_train.h5`` and ``shd_test.h5`` (or the published ``.h5.gz``, or ``.h5.zip``)
  with ``spikes/times`` (seconds), ``spikes/units`` (0..699) and ``labels`` (0..19).
- ``dvs``: our own ``train/`` and ``test/`` folders of ``.npz`` files (``x, y, p, t, label``, optional
  ``sensor_size``).

Binning. Camera events (``bin_events``): T equal windows over the sample's [t_first, t_last]; channel 0 OFF,
1 ON; a pixel is 1 in a frame when it had at least one event of that polarity in the window, else 0. With
``downsample`` K the pixels are pooled in K×K blocks first (an event at (x, y) lands on (x // K, y // K)).
SHD (``bin_spikes``): T equal bins over [0, 1.4 s) (the window of the SHD publishers' tutorial; bin
floor(t / 1.4 s · T), later spikes dropped); a channel is 1 in a bin when it spiked in it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from snnchip.errors import DataError, SpecError

SENSORS = {"nmnist": (34, 34), "dvsgesture": (128, 128), "cifar10dvs": (128, 128)}  # (width, height)
CLASSES = {"nmnist": 10, "dvsgesture": 11, "cifar10dvs": 10, "shd": 20}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10DVS_TEST = 100  # samples 0..99 of each class are the test set
SHD_CHANNELS = 700
SHD_MAX_TIME = 1.4  # seconds binned into T steps
NMNIST_OVERFLOW_Y = 240
NMNIST_OVERFLOW_US = 2**13
MAX_FILE_BYTES = 2**32  # one sample or recording file, read whole (the largest published ones are < 2^28)
MAX_SAMPLES = 10**7
MAX_SENSOR = 4096  # pixels per side of an event sensor (1280 × 720 is the largest in use)
MAX_CLASSES = 10_000

FORMATS = {
    "nmnist": "Train/ and Test/ folders (or Train.zip and Test.zip) with one folder per digit 0..9 of N-MNIST .bin "
              "files",
    "dvsgesture": "the extracted DvsGesture folder: trials_to_train.txt, trials_to_test.txt, userNN_<lighting>.aedat "
                  "and userNN_<lighting>_labels.csv",
    "cifar10dvs": "folders airplane/ .. truck/ (or airplane.zip .. truck.zip) of cifar10_<class>_<i>.aedat files",
    "shd": "shd_train.h5 and shd_test.h5 (or .h5.gz, .h5.zip)",
    "dvs": "train/ and test/ folders of .npz files with arrays x, y, p, t and label",
}


@dataclass(frozen=True)
class Events:
    """One recording's events: pixel x and y, polarity p (0 OFF, 1 ON) and time t in µs, each [n] int64."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def select(self, keep: np.ndarray) -> Events:
        return Events(self.x[keep], self.y[keep], self.p[keep], self.t[keep])

    def check_inside(self, size: tuple[int, int], where: str) -> Events:
        w, h = size
        for name, coord, hi in (("x", self.x, w), ("y", self.y, h)):
            outside = coord[(coord < 0) | (coord >= hi)]
            if outside.size:
                raise DataError(f"{where}: an event at {name} = {int(outside[0])} lies outside the {w}×{h} sensor")
        return self


# ---------------------------------------------------------------- the published formats

def read_nmnist(raw: bytes, where: str) -> Events:
    """An N-MNIST ``.bin`` file: 5 bytes per event (x, y, polarity bit 7 and 23 bits of µs), big-endian."""
    if not raw:
        raise DataError(f"{where}: empty (an N-MNIST .bin file holds 5 bytes per event)")
    if len(raw) % 5:
        raise DataError(f"{where}: truncated N-MNIST .bin file ({len(raw)} bytes is not a whole number of 5-byte "
                        "events)")
    b = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    marker = b[:, 1] == NMNIST_OVERFLOW_Y
    t = t + NMNIST_OVERFLOW_US * np.cumsum(marker)
    ev = Events(b[:, 0], b[:, 1], b[:, 2] >> 7, t).select(~marker)
    return ev.check_inside(SENSORS["nmnist"], where)


def _aedat_data_start(raw: bytes, where: str, version: str) -> int:
    """Where the binary data of an AEDAT ``version`` file begins: after its header lines, each starting with '#'
    (the first '#!AER-DAT<version>'; AEDAT 3.1 ends the header with '#!END-HEADER')."""
    magic = f"#!AER-DAT{version}".encode()
    if not raw.startswith(magic):
        raise DataError(f"{where}: not an AEDAT {version} file (it starts {raw[:12]!r}, expected {magic.decode()!r})")
    pos = 0
    while raw[pos:pos + 1] == b"#":
        end = raw.find(b"\n", pos)
        if end < 0:
            raise DataError(f"{where}: truncated AEDAT header (its last line has no end)")
        line, pos = raw[pos:end].rstrip(b"\r"), end + 1
        if line == b"#!END-HEADER":
            break
    return pos


DVS128_SPECIAL = 0x80008000  # jAER: bit 31 special event, bit 15 external sync; neither is a pixel event
DVS128_PIXEL_BITS = 0x7FFF


def read_aedat2_dvs128(raw: bytes, where: str) -> Events:
    """An AEDAT 2.0 recording of a DVS128 (jAER): big-endian (uint32 address, uint32 µs time) pairs.

    The address decodes as jAER's DVS128 extractor does: x = 127 − bits 7..1, y = bits 14..8, ON where bit 0 is 0;
    addresses with bit 31 or bit 15 set are special (sync) events and are dropped. Times are unwrapped at 2^32.
    """
    data = memoryview(raw)[_aedat_data_start(raw, where, "2.0"):]
    if len(data) % 8:
        raise DataError(f"{where}: truncated AEDAT 2.0 data ({len(data)} bytes is not a whole number of 8-byte "
                        "events)")
    ev = np.frombuffer(data, np.dtype([("addr", ">u4"), ("t", ">u4")]))
    addr = ev["addr"].astype(np.int64)
    pixel = (addr & DVS128_SPECIAL) == 0
    if np.any(addr[pixel] & ~DVS128_PIXEL_BITS):
        bad = int(addr[pixel][(addr[pixel] & ~DVS128_PIXEL_BITS) != 0][0])
        raise DataError(f"{where}: address {bad:#010x} is not a DVS128 pixel address (bits 16..30 set)")
    addr, t = addr[pixel], ev["t"][pixel].astype(np.int64)
    t = t + 2**32 * np.concatenate([[0], np.cumsum(np.diff(t) < -2**31)])
    return Events(127 - ((addr >> 1) & 0x7F), (addr >> 8) & 0x7F, 1 - (addr & 1), t)


AEDAT3_PACKET = struct.Struct("<hhiiiiii")  # type, source, size, ts offset, ts overflow, capacity, number, valid
AEDAT3_POLARITY = 1
AEDAT3_POLARITY_EVENT = np.dtype([("data", "<u4"), ("t", "<i4")])


def read_aedat31(raw: bytes, where: str, size: tuple[int, int] = (128, 128)) -> Events:
    """The polarity events of an AEDAT 3.1 recording (cAER/libcaer packets, little-endian).

    Each packet: a 28-byte header (eventType, eventSource int16; eventSize, eventTSOffset, eventTSOverflow,
    eventCapacity, eventNumber, eventValid int32), then eventNumber events of eventSize bytes. A polarity event
    (type 1, 8 bytes): uint32 data (bit 0 valid mark, bit 1 polarity, bits 16..2 y, bits 31..17 x) and an int32
    µs time whose 64-bit value is eventTSOverflow·2^31 + time. Events without the valid mark are dropped, as the
    format defines; packets of other types are skipped.
    """
    pos, parts = _aedat_data_start(raw, where, "3.1"), []
    while pos < len(raw):
        if len(raw) - pos < AEDAT3_PACKET.size:
            raise DataError(f"{where}: truncated AEDAT 3.1 packet header at byte {pos}")
        etype, _, esize, _, overflow, _, number, _ = AEDAT3_PACKET.unpack_from(raw, pos)
        at, pos = pos, pos + AEDAT3_PACKET.size
        if etype < 0:
            raise DataError(f"{where}: packet at byte {at} is compressed (event type {etype & 0x7FFF}); only "
                            "uncompressed AEDAT 3.1 is read")
        if esize <= 0 or number < 0 or overflow < 0:
            raise DataError(f"{where}: packet at byte {at} declares {number} events of {esize} bytes and time "
                            f"overflow {overflow}: not an AEDAT 3.1 packet header")
        if number * esize > len(raw) - pos:
            raise DataError(f"{where}: truncated: the packet at byte {at} declares {number} events of {esize} "
                            f"bytes, {len(raw) - pos} bytes remain")
        if etype == AEDAT3_POLARITY:
            if esize != AEDAT3_POLARITY_EVENT.itemsize:
                raise DataError(f"{where}: polarity packet at byte {at} has {esize}-byte events (the format's are 8)")
            parts.append((np.frombuffer(raw, AEDAT3_POLARITY_EVENT, number, pos), overflow))
        pos += number * esize
    ev = np.concatenate([p for p, _ in parts]) if parts else np.zeros(0, AEDAT3_POLARITY_EVENT)
    overflow = np.concatenate([np.full(len(p), o, np.int64) for p, o in parts]) if parts else np.zeros(0, np.int64)
    if ev.size and ev["t"].min() < 0:
        raise DataError(f"{where}: a polarity event has a negative time ({int(ev['t'].min())})")
    data = ev["data"].astype(np.int64)
    valid = (data & 1) == 1
    data, t = data[valid], (overflow[valid] << 31) + ev["t"][valid]
    return Events((data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, (data >> 1) & 1, t).check_inside(size, where)


def read_gesture_labels(text: str, where: str) -> np.ndarray:
    """A DVS128 Gesture ``_labels.csv``: header ``class,startTime_usec,endTime_usec``, then one row per gesture.
    Returns [n, 3] int64 rows (class 0..10, i.e. the file's class − 1; start; end)."""
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields or (i == 1 and not fields[0].lstrip("-").isdigit()):
            continue
        try:
            label, start, end = (int(f) for f in fields)
        except ValueError:
            raise DataError(f"{where}: line {i} is not 'class,startTime_usec,endTime_usec' (three integers): "
                            f"{line.strip()[:60]!r}") from None
        if not 1 <= label <= CLASSES["dvsgesture"] or not 0 <= start <= end:
            raise DataError(f"{where}: line {i}: class {label} must be 1..{CLASSES['dvsgesture']} and "
                            f"0 <= start {start} <= end {end}")
        rows.append((label - 1, start, end))
    if not rows:
        raise DataError(f"{where}: no gesture rows (expected 'class,startTime_usec,endTime_usec' lines)")
    return np.asarray(rows, np.int64)


def read_shd(source: Path | io.BytesIO, where: str) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """An SHD file: per sample its spike times (s) and units, and the labels; every array's type and range checked."""
    import h5py

    try:
        with h5py.File(source, "r") as f:
            missing = [k for k in ("spikes/times", "spikes/units", "labels")
                       if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                raise DataError(f"{where}: no dataset {', '.join(missing)} (an SHD file holds spikes/times, "
                                "spikes/units and labels)")
            times, units, labels = f["spikes/times"], f["spikes/units"], f["labels"]
            n = labels.shape[0] if len(labels.shape) == 1 else -1
            if not 0 < n <= MAX_SAMPLES or times.shape != (n,) or units.shape != (n,):
                raise DataError(f"{where}: labels {labels.shape}, spikes/times {times.shape} and spikes/units "
                                f"{units.shape} must be one length of at most {MAX_SAMPLES} samples")
            for name, ds, kind in (("spikes/times", times, "f"), ("spikes/units", units, "iu")):
                base = h5py.check_vlen_dtype(ds.dtype)
                if base is None or base.kind not in kind:
                    raise DataError(f"{where}: {name} must hold variable-length "
                                    f"{'floats' if kind == 'f' else 'integers'}, got {base or ds.dtype}")
            if labels.dtype.kind not in "iu":
                raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
            t_all, u_all, y = list(times[()]), list(units[()]), labels[()].astype(np.int64)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise DataError(f"{where}: not a readable SHD HDF5 file ({type(exc).__name__}: {exc})") from None
    if y.min() < 0 or y.max() >= CLASSES["shd"]:
        raise DataError(f"{where}: labels {int(y.min())}..{int(y.max())} outside the {CLASSES['shd']} classes "
                        f"0..{CLASSES['shd'] - 1}")
    for i, (t, u) in enumerate(zip(t_all, u_all, strict=True)):
        if t.shape != u.shape:
            raise DataError(f"{where}: sample {i} has {t.size} spike times but {u.size} units")
        if t.size and not (np.isfinite(t).all() and t.min() >= 0):
            raise DataError(f"{where}: sample {i} has negative, NaN or infinite spike times")
        if u.size and u.max() >= SHD_CHANNELS:
            raise DataError(f"{where}: sample {i} has unit {int(u.max())}, beyond the {SHD_CHANNELS} channels")
    return t_all, u_all, y


# ---------------------------------------------------------------- binning

def bin_events(x, y, p, t, T: int, size: tuple[int, int]) -> np.ndarray:
    """Events binned into T equal windows over [t_min, t_max]: frames [T, 2, H, W], 1 where a pixel had an event
    of that polarity in the window (frame b = min(floor((t − t_min) / (t_max − t_min) · T), T − 1))."""
    w, h = size
    frames = np.zeros((T, 2, h, w), np.float32)
    if len(t):
        t = np.asarray(t, np.float64)
        span = max(t.max() - t.min(), 1e-12)
        b = np.minimum(((t - t.min()) / span * T).astype(np.int64), T - 1)
        frames[b, np.asarray(p, np.int64), np.asarray(y, np.int64), np.asarray(x, np.int64)] = 1.0
    return frames


def bin_spikes(times: np.ndarray, units: np.ndarray, T: int, channels: int = SHD_CHANNELS,
               max_time: float = SHD_MAX_TIME) -> np.ndarray:
    """Spikes binned into T equal bins over [0, max_time): [T, channels], 1 where a unit spiked in the bin
    (bin floor(t / max_time · T)); spikes at or after max_time are dropped."""
    frames = np.zeros((T, channels), np.float32)
    keep = np.asarray(times, np.float64) < max_time
    b = (np.asarray(times, np.float64)[keep] / max_time * T).astype(np.int64)
    frames[b, np.asarray(units, np.int64)[keep]] = 1.0
    return frames


def _event_frames(ev: Events, T: int, size: tuple[int, int], k: int) -> np.ndarray:
    """``bin_events`` of ``ev`` on the sensor of ``size`` (W, H) with its pixels pooled K×K."""
    w, h = size
    return bin_events(ev.x // k, ev.y // k, ev.p, ev.t, T, (w // k, h // k))


# ---------------------------------------------------------------- files: folders and zip archives read in place

class _Tree:
    """The files under a folder, or the members of a zip archive read in place, by relative POSIX path."""

    def __init__(self, path: Path) -> None:
        self.path, self.zip = path, None
        if path.is_dir():
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
            return
        try:
            self.zip = zipfile.ZipFile(path)
            self.names = sorted(i.filename for i in self.zip.infolist() if not i.is_dir())
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise DataError(f"{path}: not a zip archive ({type(exc).__name__}: {exc})") from None

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc) -> None:
        if self.zip is not None:
            self.zip.close()

    def samples(self, suffix: str) -> list[str]:
        """The names ending in ``suffix``, without macOS's ``__MACOSX/`` and ``._`` resource forks."""
        return [n for n in self.names if n.lower().endswith(suffix) and not n.startswith("__MACOSX/")
                and not PurePosixPath(n).name.startswith("._")]

    def where(self, name: str) -> str:
        return f"{self.path}!{name}" if self.zip is not None else str(self.path / name)

    def read(self, name: str) -> bytes:
        where = self.where(name)
        try:
            if self.zip is None:
                return _read_capped(self.path / name, where)
            info = self.zip.getinfo(name)
            if info.file_size > MAX_FILE_BYTES:
                raise DataError(f"{where}: declares {info.file_size} bytes, more than the {MAX_FILE_BYTES} a sample "
                                "file may have")
            return self.zip.read(info)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise DataError(f"{where}: unreadable ({type(exc).__name__}: {exc})") from None


def _read_capped(path: Path, where: str) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{where}: {size} bytes, more than the {MAX_FILE_BYTES} a sample file may have")
    return path.read_bytes()


def _child(root: Path, name: str) -> Path | None:
    """``root/name``, its name matched without regard to case (the publishers' archives differ: Train.zip,
    train.zip); None when there is none."""
    exact = root / name
    if exact.exists():
        return exact
    return next((p for p in sorted(root.iterdir()) if p.name.lower() == name.lower()), None)


def _folder_or_zip(root: Path, name: str, dataset: str) -> Path:
    """The extracted folder ``root/name`` if there is one, else the published archive ``root/name.zip``."""
    folder = _child(root, name)
    if folder is not None and folder.is_dir():
        return folder
    archive = _child(root, f"{name}.zip")
    if archive is None:
        raise DataError(f"{root}: no {name}/ folder or {name}.zip (expected {FORMATS[dataset]})")
    return archive


def _progress(items: list, desc: str) -> Iterator:
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, unit="file", disable=None, leave=False))


# ---------------------------------------------------------------- the datasets

Split = tuple[np.ndarray, np.ndarray]  # frames [N, T, ...], labels [N]


def _frames(n: int, shape: tuple[int, ...], where: Path) -> np.ndarray:
    """Zeroed float32 frames [n, *shape], refused in one line when they would not fit in this machine's memory."""
    need = n * int(np.prod(shape)) * 4
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        have = None
    if have is not None and need > have:
        raise DataError(f"{where}: {n} samples binned to {shape} need {need / 2**30:.1f} GiB, more than this "
                        f"machine's {have / 2**30:.1f} GiB of memory: lower --T, or pool pixels with --downsample")
    return np.zeros((n, *shape), np.float32)


def _binned(samples: list, read: Callable[[object], tuple[Events, int]], T: int, size: tuple[int, int], k: int,
            where: Path, desc: str) -> Split:
    """Each sample read (``read(sample)`` → its events and label), pooled K×K and binned into T frames."""
    w, h = size
    x = _frames(len(samples), (T, 2, h // k, w // k), where)
    labels = np.zeros(len(samples), np.int64)
    for i, sample in enumerate(_progress(samples, desc)):
        ev, labels[i] = read(sample)
        x[i] = _event_frames(ev, T, size, k)
    return x, labels


def _nmnist(root: Path, T: int, k: int) -> tuple[Split, Split]:
    parts = []
    for split in ("Train", "Test"):
        with _Tree(_folder_or_zip(root, split, "nmnist")) as tree:
            names = tree.samples(".bin")
            if not names:
                raise DataError(f"{tree.path}: no .bin sample files (expected {FORMATS['nmnist']})")

            def read(name: str, tree: _Tree = tree) -> tuple[Events, int]:
                digit = PurePosixPath(name).parent.name
                if digit not in tuple("0123456789"):
                    raise DataError(f"{tree.where(name)}: an N-MNIST sample sits in the folder of its digit 0..9, "
                                    f"not {digit!r}")
                return read_nmnist(tree.read(name), tree.where(name)), int(digit)

            parts.append(_binned(names, read, T, SENSORS["nmnist"], k, tree.path, f"N-MNIST {split}"))
    return parts[0], parts[1]


CIFAR10DVS_NAME = re.compile(r"cifar10_([a-z]+)_(\d+)\.aedat$")


def _cifar10dvs(root: Path, T: int, k: int) -> tuple[Split, Split]:
    split: dict[bool, list[tuple[_Tree, str, int]]] = {True: [], False: []}  # is_test -> (tree, name, label)
    with contextlib.ExitStack() as trees:
        for label, cls in enumerate(CIFAR10_CLASSES):
            tree = trees.enter_context(_Tree(_folder_or_zip(root, cls, "cifar10dvs")))
            for name in tree.samples(".aedat"):
                m = CIFAR10DVS_NAME.search(PurePosixPath(name).name)
                if m is None or m.group(1) != cls:
                    raise DataError(f"{tree.where(name)}: a CIFAR10-DVS sample of class {cls!r} is named "
                                    f"cifar10_{cls}_<i>.aedat (its index i sets the split)")
                split[int(m.group(2)) < CIFAR10DVS_TEST].append((tree, name, label))
        for is_test, what in ((False, "training (i >= 100)"), (True, "test (i < 100)")):
            if not split[is_test]:
                raise DataError(f"{root}: no {what} samples (expected {FORMATS['cifar10dvs']})")

        def read(sample: tuple[_Tree, str, int]) -> tuple[Events, int]:
            tree, name, label = sample
            return read_aedat2_dvs128(tree.read(name), tree.where(name)), label

        train, test = (_binned(split[is_test], read, T, SENSORS["cifar10dvs"], k, root, f"CIFAR10-DVS {part}")
                       for is_test, part in ((False, "train"), (True, "test")))
        return train, test


def _gesture_root(root: Path) -> Path:
    for candidate in (root, root / "DvsGesture"):
        if (candidate / "trials_to_train.txt").is_file():
            return candidate
    raise DataError(f"{root}: no trials_to_train.txt here or in DvsGesture/ (expected {FORMATS['dvsgesture']}; "
                    "extract the published DvsGesture.tar.gz first)")


def _gesture_trials(root: Path, split: str) -> list[str]:
    path = root / f"trials_to_{split}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [n for n in names if not re.fullmatch(r"[\w.-]+\.aedat", n) or n.startswith(".")]
    if bad or not names:
        raise DataError(f"{path}: each line names a recording userNN_<lighting>.aedat in this folder; got "
                        f"{(bad or ['nothing'])[0][:60]!r}")
    return names


def _dvsgesture(root: Path, T: int, k: int) -> tuple[Split, Split]:
    root = _gesture_root(root)
    w, h = SENSORS["dvsgesture"]
    parts = []
    for split in ("train", "test"):
        trials = _gesture_trials(root, split)
        rows = []
        for name in trials:
            csv = root / f"{name[:-len('.aedat')]}_labels.csv"
            try:
                text = csv.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"{csv}: unreadable ({type(exc).__name__}: {exc}; each recording has its "
                                "_labels.csv)") from None
            rows.append(read_gesture_labels(text, str(csv)))
        x = _frames(sum(len(r) for r in rows), (T, 2, h // k, w // k), root)
        labels, i = np.zeros(len(x), np.int64), 0
        for name, gestures in zip(_progress(trials, f"DVS128 Gesture {split}"), rows, strict=True):
            path = root / name
            if not path.is_file():
                raise DataError(f"{path}: no such recording (listed in trials_to_{split}.txt)")
            try:
                ev = read_aedat31(_read_capped(path, str(path)), str(path))
            except OSError as exc:
                raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
            for label, start, end in gestures:
                x[i] = _event_frames(ev.select((ev.t >= start) & (ev.t < end)), T, (w, h), k)
                labels[i], i = label, i + 1
        parts.append((x, labels))
    return parts[0], parts[1]


def _shd_source(root: Path, split: str) -> tuple[Path | io.BytesIO, str]:
    """``shd_<split>.h5``, or its published ``.h5.gz`` / ``.h5.zip`` decompressed into memory."""
    name = f"shd_{split}.h5"
    for suffix in ("", ".gz", ".zip"):
        path = _child(root, name + suffix)
        if path is None:
            continue
        where = str(path)
        if suffix == "":
            return path, where
        try:
            if suffix == ".gz":
                with gzip.open(path, "rb") as fh:
                    raw = fh.read(MAX_FILE_BYTES + 1)
            else:
                with _Tree(path) as tree:
                    members = tree.samples(".h5")
                    if len(members) != 1:
                        raise DataError(f"{path}: holds {len(members)} .h5 files, expected one ({name})")
                    raw, where = tree.read(members[0]), tree.where(members[0])
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
        if len(raw) > MAX_FILE_BYTES:
            raise DataError(f"{path}: decompresses to more than {MAX_FILE_BYTES} bytes; no SHD file is that large")
        return io.BytesIO(raw), where
    raise DataError(f"{root}: no {name}[.gz|.zip] (expected {FORMATS['shd']})")


def _shd(root: Path, T: int) -> tuple[Split, Split]:
    parts = []
    for split in ("train", "test"):
        source, where = _shd_source(root, split)
        times, units, labels = read_shd(source, where)
        x = _frames(len(labels), (T, SHD_CHANNELS), root)
        for i in range(len(labels)):
            x[i] = bin_spikes(times[i], units[i], T)
        parts.append((x, labels))
    return parts[0], parts[1]


def read_npz_events(path: Path, T: int) -> tuple[np.ndarray, int]:
    """One ``dvs`` sample file: its frames [T, 2, H, W] (``bin_events``) and label; never unpickled, every field
    checked."""
    fmt = f"expected {FORMATS['dvs']}"
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y", "p", "t", "label") if k not in z]
            if missing:
                raise DataError(f"{path}: missing arrays {missing} ({fmt})")
            ev = {k: z[k] for k in ("x", "y", "p", "t", "label")}
            size = z["sensor_size"] if "sensor_size" in z else np.array([128, 128])
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not an event .npz ({type(exc).__name__}: {exc}; {fmt})") from None
    shapes = {k: ev[k].shape for k in ("x", "y", "p", "t")}
    if any(len(v) != 1 for v in shapes.values()) or len(set(shapes.values())) != 1:
        raise DataError(f"{path}: x, y, p, t must be 1-D arrays of one length, got shapes {shapes}")
    if size.shape != (2,) or size.dtype.kind not in "iu" or size.min() < 1 or size.max() > MAX_SENSOR:
        raise DataError(f"{path}: sensor_size must be two integers (W, H) in 1..{MAX_SENSOR}, got {size.tolist()}")
    w, h = (int(v) for v in size)
    for k, hi in (("x", w), ("y", h), ("p", 2), ("t", None)):
        a = ev[k]
        if a.dtype.kind not in ("iuf" if k == "t" else "iu"):
            raise DataError(f"{path}: {k} must hold {'numbers' if k == 't' else 'integers'}, got {a.dtype}")
        if hi is not None and a.size and (a.min() < 0 or a.max() >= hi):
            raise DataError(f"{path}: {k} values must be in 0..{hi - 1}, found {int(a.min())}..{int(a.max())}")
    if not np.isfinite(ev["t"]).all():
        raise DataError(f"{path}: t holds NaN or infinite times")
    label = ev["label"]
    if label.size != 1 or label.dtype.kind not in "iu" or not 0 <= int(label.reshape(-1)[0]) < MAX_CLASSES:
        raise DataError(f"{path}: label must be one integer in 0..{MAX_CLASSES - 1}, got {label.tolist()!r:.40}")
    return bin_events(ev["x"], ev["y"], ev["p"], ev["t"], T, (w, h)), int(label.reshape(-1)[0])


def _npz(root: Path, T: int) -> tuple[Split, Split]:
    parts = []
    for part in ("train", "test"):
        files = sorted((root / part).glob("*.npz"))
        if not files:
            raise DataError(f"{root / part}: no .npz event files (expected {FORMATS['dvs']})")
        samples = [read_npz_events(f, T) for f in files]
        parts.append((np.stack([x for x, _ in samples]), np.asarray([y for _, y in samples])))
    return parts[0], parts[1]


def check_downsample(name: str, k: int) -> None:
    """``downsample`` K: 1, or for a camera dataset a divisor of its sensor's width and height."""
    if k == 1:
        return
    if name not in SENSORS:
        raise SpecError(f"--downsample {k}: pooling pixels applies to {', '.join(SENSORS)}, not {name!r}")
    w, h = SENSORS[name]
    if not isinstance(k, int) or k < 1 or w % k or h % k:
        raise SpecError(f"--downsample {k}: K must divide the {w}×{h} sensor of {name} (e.g. "
                        f"{', '.join(str(d) for d in range(2, w + 1) if w % d == 0 and h % d == 0)})")


def downsample_for(name: str, input_shape: tuple[int, ...]) -> int:
    """The ``downsample`` K that gives a camera dataset's frames ``input_shape`` (2, H/K, W/K); 1 otherwise."""
    if name in SENSORS and len(input_shape) == 3 and input_shape[1] > 0:
        w, h = SENSORS[name]
        k = h // input_shape[1]
        if k >= 1 and input_shape == (2, h // k, w // k) and h % k == 0 and w % k == 0:
            return k
    return 1


def load_events(name: str, root: Path, T: int, downsample: int = 1) -> tuple[Split, Split]:
    """The training and test split of event dataset ``name`` under ``root``, binned (module doc)."""
    check_downsample(name, downsample)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a directory' if root.exists() else 'no such directory'} (--data-dir names "
                        f"the folder that holds {FORMATS[name]})")
    if name == "shd":
        return _shd(root, T)
    if name == "dvs":
        return _npz(root, T)
    if name == "nmnist":
        return _nmnist(root, T, downsample)
    if name == "dvsgesture":
        return _dvsgesture(root, T, downsample)
    return _cifar10dvs(root, T, downsample)
