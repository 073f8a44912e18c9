"""The shape of a replay's data: one key set, with a per-step shape and dtype per key.

This is the one chunk contract: `Spec.of_spaces` derives it from an env's spaces (what
the learner checks actors' chunks against, and what its replay holds). Without one, the
first step or chunk a replay sees (or loads from disk) fixes the spec. Everything added
later is checked against it, so a mismatch fails at the `add` that caused it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Spec:
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]

    @property
    def keys(self) -> list[str]:
        return list(self.shapes)

    @property
    def step_nbytes(self) -> int:
        return sum(int(np.prod(s, dtype=np.int64)) * self.dtypes[k].itemsize for k, s in self.shapes.items())

    @staticmethod
    def of_spaces(obs_space: Any, act_space: Any) -> Spec:
        """The per-step record `{**obs, action, reward}` of an env with these (contract) spaces.

        The action is stored as a float32 vector (one-hot for a Discrete space), the reward as a float32 scalar.
        """
        shapes = {k: tuple(s.shape) for k, s in obs_space.spaces.items()}
        dtypes = {k: np.dtype(s.dtype) for k, s in obs_space.spaces.items()}
        n = getattr(act_space, "n", None)  # Discrete: one-hot
        shapes["action"] = (int(n),) if n is not None else tuple(act_space.shape)
        shapes["reward"] = ()
        dtypes["action"] = dtypes["reward"] = np.dtype(np.float32)
        return Spec(shapes, dtypes)

    @staticmethod
    def of_step(step: Mapping[str, np.ndarray]) -> Spec:
        arrays = as_arrays(step, "step")
        return Spec({k: v.shape for k, v in arrays.items()}, {k: v.dtype for k, v in arrays.items()})

    @staticmethod
    def of_chunk(chunk: Mapping[str, np.ndarray]) -> Spec:
        arrays = as_arrays(chunk, "chunk")
        return Spec({k: v.shape[1:] for k, v in arrays.items()}, {k: v.dtype for k, v in arrays.items()})

    def check_step(self, step: Mapping[str, np.ndarray], what: str = "step",
                   hint: str = "convert it before adding") -> dict[str, np.ndarray]:
        """The step's values as arrays; raises ValueError naming the key that does not fit (and `hint`)."""
        arrays = as_arrays(step, "step")
        self._check_keys(arrays, what, hint)
        for key, value in arrays.items():
            self._check_value(key, value.shape, value.dtype, what, hint)
        return arrays

    def check_chunk(self, chunk: Mapping[str, np.ndarray], what: str = "chunk",
                    hint: str = "convert it before adding") -> tuple[dict[str, np.ndarray], int]:
        """The chunk's arrays and their common length; raises ValueError on any mismatch (naming `what`)."""
        arrays = as_arrays(chunk, "chunk")
        self._check_keys(arrays, what, hint)
        length = chunk_length(arrays)
        for key, value in arrays.items():
            self._check_value(key, value.shape[1:], value.dtype, what, hint)
        return arrays, length

    def _check_keys(self, arrays: Mapping[str, np.ndarray], what: str, hint: str) -> None:
        missing, extra = set(self.shapes) - set(arrays), set(arrays) - set(self.shapes)
        if missing or extra:
            raise ValueError(f"{what} has keys {sorted(arrays)}, expected {sorted(self.shapes)} (missing "
                             f"{sorted(missing)}, unexpected {sorted(extra)}); {hint}")

    def _check_value(self, key: str, shape: tuple[int, ...], dtype: np.dtype, what: str, hint: str) -> None:
        if shape != self.shapes[key] or dtype != self.dtypes[key]:
            raise ValueError(f"{what}: {key!r} is {dtype}{shape} per step, expected "
                             f"{self.dtypes[key]}{self.shapes[key]}; {hint}")


def as_arrays(data: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"a {what} must be a non-empty dict of arrays, got {type(data).__name__}")
    arrays = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"{what} key {key!r} must be a non-empty string without '/'")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ValueError(f"{what} key {key!r} holds Python objects (dtype object); only numeric and bool "
                             "arrays can be stored")
        arrays[key] = array
    return arrays


def chunk_length(arrays: Mapping[str, np.ndarray]) -> int:
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
    if None in lengths.values():
        scalar = [k for k, n in lengths.items() if n is None]
        raise ValueError(f"chunk arrays need a leading time axis [N, ...]; keys {scalar} are scalars")
    if len(set(lengths.values())) != 1:
        raise ValueError(f"chunk arrays must all have the same length, got {lengths}")
    length = next(iter(lengths.values()))
    if length == 0:
        raise ValueError("chunk is empty (length 0); send at least one step")
    return length
