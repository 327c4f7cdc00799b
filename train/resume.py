"""Resuming a run exactly where it stopped: ``Progress`` (where training stands, kept in the checkpoint) and
``restore`` (model, optimizer, schedule, scaler and RNG from ``model.pt``, refusing changed options by name)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snnchip.checkpoint import load_checkpoint
from snnchip.errors import TrainingError

from .config import TrainConfig, flag, resolved

RESUME_FREE = ("out", "resume", "overwrite", "max_steps", "epochs", "quiet", "device", "compile", "data_dir")


@dataclass
class Progress:
    """Where training stands: epoch (0-based, in progress), global batches done in it, iterations done."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    history: list = dataclasses.field(default_factory=list)
    init: dict = dataclasses.field(default_factory=dict)  # the data-driven initialisation, per layer

    def to_extra(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
                "history_json": json.dumps(self.history), "init_json": json.dumps(self.init)}


def changed_options(recorded: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The options (other than ``RESUME_FREE``) whose value differs from the checkpoint's run, named."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    old = TrainConfig(**{k: v for k, v in recorded.items() if k in names})
    return [f"{flag(k)} {resolved(cfg, k)!r} (the run used {resolved(old, k)!r})" for k in sorted(names)
            if k not in RESUME_FREE and resolved(cfg, k) != resolved(old, k)]


def restore(path: Path, cfg: TrainConfig, spec, model, opt, sched, scaler) -> Progress:
    """Resume from ``path``: exactly where it stopped, with its options (``RESUME_FREE`` may change).

    Raising or lowering --epochs continues on the cosine schedule of the new length: epoch e (0-based) trains at
    lr0·(1 + cos(π·e/E))/2, as a run started with --epochs E would; the epochs already done keep their rates.
    """
    ckpt = load_checkpoint(path)
    recorded = (ckpt.metrics or {}).get("config") or {}
    changed = changed_options(recorded, cfg) if recorded else []
    if changed or ckpt.spec != spec:
        raise TrainingError(f"{path}: cannot resume with options that differ from the run's: "
                            f"{'; '.join(changed) or 'the network spec'}; resume with the run's options, or train "
                            "into a new --out")
    model.load_state_dict(ckpt.state_dict)
    opt.load_state_dict(ckpt.extra["optimizer"])
    if cfg.cuda_graph:  # the captured step reads the learning rate from a tensor on the parameters' device
        for group in opt.param_groups:
            group["lr"] = torch.as_tensor(group["lr"], device=group["params"][0].device)
    sched.load_state_dict(ckpt.extra["scheduler"])
    scaler.load_state_dict(ckpt.extra["scaler"])
    torch.set_rng_state(ckpt.extra["torch_rng"])
    if sched.T_max != cfg.epochs:
        sched.T_max = cfg.epochs
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            lr = base * (1 + math.cos(math.pi * sched.last_epoch / cfg.epochs)) / 2
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        sched._last_lr = [float(group["lr"]) for group in opt.param_groups]
    e = ckpt.extra
    return Progress(int(e["epoch"]), int(e["batch"]), int(e["global_step"]), json.loads(e["history_json"]),
                    json.loads(e.get("init_json", "{}")))
