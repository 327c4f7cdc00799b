"""A deploy directory as one sealed object: the manifest records the sha256 of every file the deployment depends on
and of every value it states, and every reader checks them before it trusts the directory.

``manifest["seal"]`` (deploy format 5 on) holds

    files:  {model.nir: sha256 of the file, params.npz: sha256 of the file}
    values: {key: sha256 of the canonical JSON of manifest[key]} for every other key of the manifest, the stages
            one by one (``stages[i]``)

(canonical JSON: sorted keys, no spaces, ASCII; Python's float repr, which round-trips exactly). ``check_seal``
recomputes them and names every file and value that differs; ``load_deploy`` refuses such a directory with
``DeployError`` unless the caller asks to read an edited deployment (``allow_edited``), and the ``SealCheck`` it
returns says what was edited. A directory of an older format (1-4) carries no seal: it is read, and reported as
unsealed.

The seal detects a file swapped in from another deployment, an edited weight, bias or register, and a manifest
value changed by hand. It carries no secret, so whoever rewrites the seal along with the files can forge it: the
check against the model itself is ``snn-validate --model``, which derives the deployment again and compares it bit
for bit (``export.provenance``).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnchip.arrayfile import load_npz
from snnchip.errors import DeployError
from snnchip.identity import sha256_file

SEALED_FILES = ("model.nir", "params.npz")
SEAL_KEY = "seal"
FIRST_SEALED_VERSION = 5


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _value_digests(manifest: dict[str, Any]) -> dict[str, str]:
    """Per manifest key (the stages one by one, as ``stages[i]``) the digest of its value, the seal excluded."""
    out = {}
    for key, value in manifest.items():
        if key == SEAL_KEY:
            continue
        if key == "stages" and isinstance(value, list):
            out.update({f"stages[{i}]": _digest(s) for i, s in enumerate(value)})
        else:
            out[key] = _digest(value)
    return out


def seal(directory: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The seal of ``manifest`` (as it will read back from JSON) and of the sealed files already in ``directory``."""
    as_read = json.loads(json.dumps({k: v for k, v in manifest.items() if k != SEAL_KEY}))
    return {"algorithm": "sha256", "files": {f: sha256_file(Path(directory) / f) for f in SEALED_FILES},
            "values": _value_digests(as_read)}


def sealed_manifest_json(directory: str | Path, manifest: dict[str, Any]) -> str:
    """manifest.json's text: ``manifest`` with its seal over the files already written to ``directory``."""
    return json.dumps({**manifest, SEAL_KEY: seal(directory, manifest)}, indent=2)


@dataclass(frozen=True)
class SealCheck:
    """What ``check_seal`` found: whether the directory carries a seal, and what no longer matches it."""

    sealed: bool
    edited: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        return self.sealed and not self.edited

    def describe(self) -> str:
        if not self.sealed:
            return "unsealed (a deploy format before 5: its files cannot be checked; re-export it to seal it)"
        return "sealed, intact" if not self.edited else f"EDITED since export: {'; '.join(self.edited)}"

    def as_dict(self) -> dict[str, Any]:
        return {"sealed": self.sealed, "intact": self.intact, "edited": list(self.edited)}


def _stage_name(manifest: dict[str, Any], key: str) -> str:
    index = int(key[len("stages["):-1])
    stages = manifest.get("stages")
    name = stages[index].get("name") if isinstance(stages, list) and index < len(stages) and \
        isinstance(stages[index], dict) else None
    return f"stage {index + 1}" + (f" ({name!r})" if name is not None else "")


def check_seal(directory: str | Path, manifest: dict[str, Any], version: int) -> SealCheck:
    """Compare the directory's files and the manifest's values with its seal (format ``version`` ≥ 5)."""
    if version < FIRST_SEALED_VERSION:
        return SealCheck(sealed=False)
    path = Path(directory)
    recorded = manifest.get(SEAL_KEY)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("files"), dict) or \
            not isinstance(recorded.get("values"), dict):
        return SealCheck(sealed=True, edited=("manifest.json: its seal is missing or malformed",))
    edited = []
    for name in SEALED_FILES:
        if recorded["files"].get(name) != sha256_file(path / name):
            edited.append(f"{name}: its sha256 differs from the one manifest.json seals (replaced or edited)")
    now, then = _value_digests(manifest), recorded["values"]
    for key in sorted(set(now) | set(then), key=lambda k: (k.startswith("stages["), len(k), k)):
        what = _stage_name(manifest, key) if key.startswith("stages[") else f"{key!r}"
        if key not in then:
            edited.append(f"manifest.json: {what} is not sealed (added after export)")
        elif key not in now:
            edited.append(f"manifest.json: {what} is missing (removed after export)")
        elif now[key] != then[key]:
            edited.append(f"manifest.json: {what} differs from its sealed value")
    return SealCheck(sealed=True, edited=tuple(edited))


def refuse_edited(directory: str | Path, check: SealCheck, target: str = "loihi") -> None:
    """``DeployError`` naming the first file or value of ``directory`` that no longer matches its seal."""
    if check.edited:
        more = f" (and {len(check.edited) - 1} more)" if len(check.edited) > 1 else ""
        raise DeployError(f"{Path(directory)}/{check.edited[0]}{more}: the deployment was edited or its files "
                          f"swapped since snn-export sealed it; re-export it (snn-export MODEL --target {target} -o "
                          "DIR), "
                          "or pass --allow-edited (allow_edited=True) to run it as it is")


def check_format(manifest: Any, where: str | Path, name: str, readable: tuple[int, ...]) -> int:
    """The deploy format version of ``manifest`` (read from ``where``), or ``DeployError`` saying whether it is not
    a deploy manifest at all, older than this snnchip reads, or newer, and what to do."""
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    version = fmt.get("version") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or fmt.get("name") != name or isinstance(version, bool) or \
            not isinstance(version, int):
        raise DeployError(f"{where}: not a snnchip deploy manifest (format {fmt!r:.80}); write a deploy directory "
                          "with `snn-export MODEL --target loihi -o DIR`")
    span = f"{min(readable)}-{max(readable)}"
    if version < min(readable):
        source = (manifest.get("source") or {}).get("path") if isinstance(manifest.get("source"), dict) else None
        raise DeployError(f"{where}: deploy format version {version} is older than this snnchip reads ({span}); "
                          f"re-export it from its model with this snnchip: `snn-export {source or 'MODEL'} --target "
                          "loihi -o DIR`")
    if version > max(readable):
        raise DeployError(f"{where}: deploy format version {version} was written by a newer snnchip (this one reads "
                          f"{span}); upgrade snnchip, or re-export the model with this one (`snn-export MODEL "
                          "--target loihi -o DIR`)")
    if version not in readable:
        raise DeployError(f"{where}: deploy format version {version} is not one this snnchip reads "
                          f"({', '.join(map(str, readable))})")
    return version


def open_deploy_dir(deploy_dir: str | os.PathLike, files: tuple[str, ...], target: str) -> tuple[Path, dict]:
    """A deploy directory's path and its parsed manifest.json: not a directory, a file of ``files`` missing, or a
    manifest that is not JSON raises ``DeployError`` naming the path and the ``snn-export --target`` to re-run."""
    path = Path(deploy_dir)
    if not path.is_dir():
        raise DeployError(f"{path}: not a deploy directory (write one with `snn-export MODEL --target {target} "
                          "-o DIR`)")
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise DeployError(f"{path}: missing {', '.join(missing)}; re-run `snn-export --target {target}`")
    where = path / "manifest.json"
    try:
        return path, json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"{where}: corrupt ({exc})") from None


def read_params(path: Path, target: str) -> dict[str, Any]:
    """Every array of a deploy directory's params.npz (never unpickled); an unreadable file raises ``DeployError``
    naming it."""
    try:
        return load_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DeployError(f"{path}: corrupt or not a params archive ({type(exc).__name__}: {str(exc)[:200]}); "
                          f"re-run `snn-export --target {target}`") from None
