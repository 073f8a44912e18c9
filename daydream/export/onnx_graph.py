"""How every daydream graph becomes ONNX: opset 17, a dynamic batch axis, metadata stamped as model
properties, checked by onnx, optionally written to a file."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

OPSET = 17


def export_graph(graph: nn.Module, args: tuple[Tensor, ...], inputs: Sequence[str], outputs: Sequence[str],
                 props: dict[str, str], path: str | Path | None = None) -> bytes:
    """`graph` traced on `args` (the TorchScript exporter), with `props` as metadata; its bytes (also at `path`)."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (and LSTM batch warnings)
        torch.onnx.export(graph, args, buffer, dynamo=False, opset_version=OPSET, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]})
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if path is not None:
        write_model(path, data)
    return data


def write_model(path: str | Path, data: bytes) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
