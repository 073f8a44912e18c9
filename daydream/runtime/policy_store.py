"""A folder holding the newest policy: `policy.onnx` and/or `weights.npz`, committed by `policy.json`.

The learner keeps its last published policy here (in `<logdir>/policy/`), so a restarted
learner serves it again at once and numbers the next one above it; an actor keeps the
last policy it received, so after a restart it acts on it even while the learner is
unreachable. `policy.json` is written last and names the sha256 of each artifact, so a
crash between the writes leaves the previous policy, or a mismatch that `load` rejects.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from daydream.atomic import atomic_write, atomic_write_bytes
from daydream.transport.policy import PolicyUpdate

log = logging.getLogger(__name__)

ONNX_NAME, WEIGHTS_NAME, META_NAME = "policy.onnx", "weights.npz", "policy.json"


class PolicyStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_NAME

    def version(self) -> int:
        """Version of the stored policy, 0 if none."""
        meta = self._meta()
        return int(meta["version"]) if meta else 0

    def save(self, update: PolicyUpdate, info: dict[str, Any] | None = None) -> None:
        meta: dict[str, Any] = {"version": update.version, **(info or {})}
        if update.onnx is not None:
            atomic_write_bytes(self.onnx_path, update.onnx)
            meta["onnx_sha256"] = update.onnx_sha256
        if update.weights is not None:
            weights = update.weights
            atomic_write(self.directory / WEIGHTS_NAME, lambda f: np.savez(f, **weights))
            meta["weights_sha256"] = update.weights_sha256
        atomic_write_bytes(self.directory / META_NAME, json.dumps(meta, indent=1).encode())

    def load(self) -> PolicyUpdate | None:
        """The stored policy with every artifact its metadata names, verified; None if none is usable."""
        meta = self._meta()
        if not meta:
            return None
        onnx = weights = None
        try:
            if "onnx_sha256" in meta:
                onnx = self.onnx_path.read_bytes()
            if "weights_sha256" in meta:
                with np.load(self.directory / WEIGHTS_NAME, allow_pickle=False) as npz:
                    weights = {k: npz[k] for k in npz.files}
            update = PolicyUpdate(int(meta["version"]), onnx, weights)
            if update.onnx_sha256 != meta.get("onnx_sha256"):
                raise ValueError(f"{self.onnx_path} does not match the sha256 in {META_NAME}")
            if update.weights_sha256 != meta.get("weights_sha256"):
                raise ValueError(f"{WEIGHTS_NAME} does not match the sha256 in {META_NAME}")
        except (OSError, ValueError) as exc:
            log.warning("ignoring the stored policy in %s: %s", self.directory, exc)
            return None
        return update

    def _meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.directory / META_NAME).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("unreadable %s in %s (%s); treating it as empty", META_NAME, self.directory, exc)
            return {}

