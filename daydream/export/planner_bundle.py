"""The exported PlaNet planner as one artifact: two ONNX graphs and their contract, in a zip.

A planner (`behavior.kind: planet`) needs two graphs where a Dreamer actor needs one:
`filter.onnx` (encoder + one RSSM filter step: the observation into the latent state)
and `imagine_step.onnx` (one prior step + the reward head, over a batch of candidates).
They travel together as the policy's `onnx` bytes (sha256-verified and cached like an
acting graph), zipped with `planner.json` (the `PlannerSpec`). Needs only the standard
library: an actor tells a planner from an acting graph by `is_planner_bundle`.

filter.onnx: inputs each observation key, `deter`, `stoch`, `prev_action`, `is_first`,
`latent_noise`; outputs `deter_out`, `stoch_out` (the state resets where `is_first` is set).
imagine_step.onnx: inputs `deter`, `stoch`, `action`, `latent_noise`; outputs `deter_out`,
`stoch_out`, `reward` ([batch]). The first dimension of every tensor is the batch.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass

FILTER_NAME, STEP_NAME, SPEC_NAME = "filter.onnx", "imagine_step.onnx", "planner.json"
FILTER_INPUTS = ("deter", "stoch", "prev_action", "is_first", "latent_noise")
FILTER_OUTPUTS = ("deter_out", "stoch_out")
STEP_INPUTS = ("deter", "stoch", "action", "latent_noise")
STEP_OUTPUTS = ("deter_out", "stoch_out", "reward")
_ZIP_MAGIC = b"PK\x03\x04"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries' timestamp: the same graphs give the same bytes (and sha256)


@dataclass(frozen=True)
class PlannerSpec:
    obs: dict[str, tuple[list[int], str]]     # key -> (per-step shape, dtype)
    action_dim: int
    deter: int
    stoch: list[int]                          # per-step shape of the stochastic state
    latent_noise: str                         # gumbel | normal (as daydream.export.spec)
    version: int
    config_hash: str

    @property
    def filter_input_names(self) -> list[str]:
        return [*self.obs, *FILTER_INPUTS]


def is_planner_bundle(data: bytes) -> bool:
    """Whether policy bytes are a planner bundle (a zip) rather than one ONNX acting graph (a protobuf)."""
    return data[:4] == _ZIP_MAGIC


def pack_bundle(spec: PlannerSpec, filter_onnx: bytes, step_onnx: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in ((SPEC_NAME, json.dumps(asdict(spec), sort_keys=True).encode()),
                           (FILTER_NAME, filter_onnx), (STEP_NAME, step_onnx)):
            zf.writestr(zipfile.ZipInfo(name, _FIXED_TIME), data)
    return buffer.getvalue()


def unpack_bundle(data: bytes) -> tuple[PlannerSpec, bytes, bytes]:
    """(spec, filter graph, imagination step graph); ValueError naming what is wrong otherwise."""
    if not is_planner_bundle(data):
        raise ValueError("this policy is an ONNX acting graph, not a PlaNet planner bundle: the learner trains "
                         "behavior.kind: dreamer; use transport.policy_runtime: onnx (or torch)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            raw = json.loads(zf.read(SPEC_NAME))
            filter_onnx, step_onnx = zf.read(FILTER_NAME), zf.read(STEP_NAME)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"planner bundle is damaged or incomplete ({exc}); re-export it") from exc
    raw["obs"] = {k: (list(v[0]), str(v[1])) for k, v in raw["obs"].items()}
    return PlannerSpec(**raw), filter_onnx, step_onnx
