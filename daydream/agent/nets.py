"""Neural network building blocks: normalised MLPs, the block-diagonal GRU, and the
multi-key observation encoder and decoder (CNN for images, MLP for vectors).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daydream.agent.math import symlog

ACTIVATIONS = {"silu": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


# Inputs from this many elements up take the one-node CPU RMSNorm; below it, the Python
# autograd.Function's own overhead outweighs the passes it saves (measured: 50 us slower per
# norm at 16 x 64, even at 256 x 64, 1.4x faster at 1024 x 64 and up)
CPU_NORM_NODE_MIN = 32768


class RMSNorm(nn.RMSNorm):
    """RMSNorm that exports to ONNX opsets without a fused RMS op (it falls back to primitives),
    and on CPUs runs large inputs as one autograd node (`_RMSNormCPU`): torch's CPU `rms_norm` is
    a chain of six elementwise passes with six more backward nodes (the imagination's [1024, 64]
    states and the heads' pass over all imagined states run hundreds of them). CUDA keeps
    torch's fused kernel."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            return x * scale * self.weight
        if (x.device.type == "cpu" and x.numel() >= CPU_NORM_NODE_MIN and x.dtype == self.weight.dtype
                and self.eps is not None):
            return _RMSNormCPU.apply(x, self.weight, self.eps)
        return super().forward(x)


class _RMSNormCPU(torch.autograd.Function):
    """y = x * r * w with r = rsqrt(mean(x^2) + eps) over the last dim; the backward pass in closed form:
    dx = r * (g*w - xhat * mean(g*w * xhat)), dw = sum(g * xhat), where xhat = x * r."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        rate = torch.linalg.vecdot(x, x).unsqueeze(-1).mul_(1.0 / x.shape[-1]).add_(eps).rsqrt_()
        xhat = x * rate
        ctx.save_for_backward(xhat, rate, weight)
        return xhat * weight

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        xhat, rate, weight = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            gw = grad * weight
            coef = torch.linalg.vecdot(gw, xhat).unsqueeze(-1).mul_(-1.0 / xhat.shape[-1])
            dx = torch.addcmul(gw, xhat, coef).mul_(rate)
        if ctx.needs_input_grad[1]:
            dw = (grad * xhat).reshape(-1, xhat.shape[-1]).sum(0)
        return dx, dw, None


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """`module`'s trainable parameters take no gradient inside the block (and take one again after it)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "rms":
        return RMSNorm(dim, eps=1e-4)
    if kind == "layer":
        return nn.LayerNorm(dim, eps=1e-4)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; use rms, layer or none")


def init_weights(module: nn.Module, fan: str = "avg") -> None:
    """Truncated-normal init of every linear, block-linear and conv layer (as DreamerV3).

    fan=avg scales by the average of fan-in and fan-out (June 2023), fan=in by fan-in
    (newest official). A block-linear layer counts its whole input and output, as the
    official one. A layer marked by `scaled_init` keeps its output scale: its weights
    are multiplied by `outscale` (0 = zeros, as the official reward and critic outputs).
    """
    if fan not in ("avg", "in"):
        raise ValueError(f"unknown init fan '{fan}'; use avg or in")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Linear) else m.weight.shape[1] * m.weight[0, 0].numel()
            fan_out = m.weight.shape[0] * (m.weight[0, 0].numel() if m.weight.dim() > 2 else 1)
        elif isinstance(m, BlockLinear):
            blocks, inp, out = m.weight.shape
            fan_in, fan_out = blocks * inp, blocks * out
        else:
            continue
        std = math.sqrt(2.0 / (fan_in + fan_out) if fan == "avg" else 1.0 / fan_in) / 0.87962566
        outscale = float(getattr(m, "outscale", 1.0))
        if outscale == 0.0:
            nn.init.zeros_(m.weight)
        else:
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            m.weight.data.mul_(outscale)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def scaled_init(layer: nn.Linear, outscale: float) -> nn.Linear:
    """Mark `layer` so that `init_weights` scales its weights by `outscale` (0 = zeros); applied now too."""
    layer.outscale = outscale  # type: ignore[assignment]
    init_weights(layer)
    return layer


def zero_init(layer: nn.Linear) -> nn.Linear:
    """An output layer that starts (and stays under `init_weights`) at exactly zero."""
    return scaled_init(layer, 0.0)


class MLP(nn.Sequential):
    """`layers` x (Linear -> norm -> activation); the caller adds its own output layer."""

    def __init__(self, inp: int, units: int, layers: int, norm: str, act: str) -> None:
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(inp if i == 0 else units, units, bias=norm == "none"), make_norm(norm, units),
                     ACTIVATIONS[act]()]
        super().__init__(*mods)
        self.out_dim = units if layers else inp


class BlockLinear(nn.Module):
    """A linear layer applied independently to `blocks` groups: [.., G, i] -> [.., G, o]."""

    def __init__(self, blocks: int, inp: int, out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(blocks, inp, out))
        self.bias = nn.Parameter(torch.zeros(blocks, out))
        std = math.sqrt(2.0 / (inp + out)) / 0.87962566
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class BlockGRU(nn.Module):
    """DreamerV3's normalised GRU with block-diagonal recurrent weights.

    The state of size `deter` is split into `blocks` groups. Each group sees the full
    input `x` (which the RSSM builds to contain a projection of the whole deterministic
    state when blocks > 1, as the official `dynin` layer) and its own part of the state,
    through `layers` block-linear hidden layers (the official `dynhid`, normalised over
    the whole state) and then the block-linear gate layer. `gate_norm` normalises the
    gate pre-activations per block (the June 2023 GRU; the newest official has none).
    blocks=1, layers=0, gate_norm=True is the June 2023 dense normalised GRU.
    """

    def __init__(self, inp: int, deter: int, blocks: int, norm: str, act: str = "silu", layers: int = 0,
                 gate_norm: bool = True) -> None:
        super().__init__()
        if deter % blocks:
            raise ValueError(f"model.deter ({deter}) must be divisible by model.blocks ({blocks})")
        self.blocks, self.deter = blocks, deter
        size = deter // blocks
        self.hidden = nn.ModuleList(
            [BlockLinear(blocks, (inp if i == 0 else 0) + size, size) for i in range(layers)])
        self.hidden_norms = nn.ModuleList([make_norm(norm, deter) for _ in range(layers)])
        self.act = ACTIVATIONS[act]()
        self.gates = BlockLinear(blocks, size if layers else inp + size, 3 * size)
        self.norm = make_norm(norm, 3 * size) if gate_norm else nn.Identity()

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        g = self.blocks
        if g == 1 and not self.hidden:  # dense: one fused matmul for all three gates, no block reshapes
            parts = self.norm(F.linear(torch.cat([x, h], -1), self.gates.weight[0].t(), self.gates.bias[0]))
            hb = h
        else:
            hb = h.reshape(*h.shape[:-1], g, self.deter // g)
            xb = x.unsqueeze(-2).expand(*x.shape[:-1], g, x.shape[-1])
            z = torch.cat([xb, hb], -1)
            for layer, norm in zip(self.hidden, self.hidden_norms):
                z = layer(z)
                z = self.act(norm(z.reshape(*h.shape[:-1], self.deter))).reshape(hb.shape)
            parts = self.norm(self.gates(z))
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        out = hb + update * (cand - hb)  # = update * cand + (1 - update) * hb, in two ops instead of four
        return out.reshape(h.shape)


@dataclass(frozen=True)
class ObsKeys:
    """Which observation keys the model encodes, split into images and vectors."""

    cnn: dict[str, tuple[int, ...]]
    mlp: dict[str, tuple[int, ...]]

    @classmethod
    def select(cls, shapes: dict[str, tuple[int, ...]], cnn_pattern: str, mlp_pattern: str) -> "ObsKeys":
        reserved = {"is_first", "is_last", "is_terminal", "reward", "action"}
        usable = {k: tuple(v) for k, v in shapes.items() if k not in reserved and not k.startswith("log_")}
        cnn = {k: v for k, v in usable.items() if re.search(cnn_pattern, k) and len(v) == 3}
        mlp = {k: v for k, v in usable.items() if k not in cnn and re.search(mlp_pattern, k) and len(v) <= 1}
        if not cnn and not mlp:
            raise ValueError(
                f"no observation key matches model.cnn_keys='{cnn_pattern}' (HxWxC images) or "
                f"model.mlp_keys='{mlp_pattern}' (vectors); the env provides {sorted(usable)} "
                f"with shapes {usable}. Adjust the regexes in the config."
            )
        return cls(cnn, mlp)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions with doubling depth down to `min_res`, then flatten."""

    def __init__(self, shape: tuple[int, int, int], depth: int, min_res: int, norm: str, act: str) -> None:
        super().__init__()
        h, w, c = shape
        if h != w or h & (h - 1) or h < min_res * 2:
            raise ValueError(f"image observations must be square with a power-of-two side >= {2 * min_res}, got "
                             f"{shape}")
        stages = int(math.log2(h // min_res))
        layers: list[nn.Module] = []
        for i in range(stages):
            out = depth * 2**i
            layers += [nn.Conv2d(c, out, 4, 2, 1, bias=norm == "none"), ChannelNorm(norm, out), ACTIVATIONS[act]()]
            c = out
        self.net = nn.Sequential(*layers)
        self.out_dim = c * min_res * min_res

    def forward(self, image: Tensor) -> Tensor:
        x = image.float() / 255.0 - 0.5
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, -1)


class ChannelNorm(nn.Module):
    """Normalise conv feature maps over channels at each pixel."""

    def __init__(self, kind: str, channels: int) -> None:
        super().__init__()
        self.norm = make_norm(kind, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: features -> min_res grid -> transposed convs -> image."""

    def __init__(self, feat: int, shape: tuple[int, int, int], depth: int, min_res: int, norm: str, act: str) -> None:
        super().__init__()
        h, _, c_out = shape
        stages = int(math.log2(h // min_res))
        self.min_res, self.top = min_res, depth * 2 ** (stages - 1)
        self.shape = shape
        self.inp = nn.Linear(feat, self.top * min_res * min_res)
        layers: list[nn.Module] = []
        c = self.top
        for i in reversed(range(stages)):
            last = i == 0
            out = c_out if last else depth * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(c, out, 4, 2, 1, bias=last or norm == "none"))
            if not last:
                layers += [ChannelNorm(norm, out), ACTIVATIONS[act]()]
            c = out
        self.net = nn.Sequential(*layers)

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        x = self.inp(feat).reshape(-1, self.top, self.min_res, self.min_res)
        x = self.net(x).permute(0, 2, 3, 1)
        return x.reshape(*lead, *self.shape)


class Encoder(nn.Module):
    """Embeds a dict of observations: CNN over images, MLP over symlog'd vectors."""

    def __init__(self, keys: ObsKeys, units: int, layers: int, depth: int, min_res: int, norm: str, act: str) -> None:
        super().__init__()
        self.keys = keys
        self.cnns = nn.ModuleDict({k: ConvEncoder(s, depth, min_res, norm, act) for k, s in keys.cnn.items()})  # type: ignore[arg-type]
        vec = sum(int(math.prod(s)) for s in keys.mlp.values())
        self.mlp = MLP(vec, units, layers, norm, act) if keys.mlp else None
        self.out_dim = sum(c.out_dim for c in self.cnns.values()) + (self.mlp.out_dim if self.mlp else 0)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        outs = [cnn(obs[k]) for k, cnn in self.cnns.items()]
        if self.mlp is not None:
            vec = torch.cat([obs[k].float().reshape(*obs[k].shape[: obs[k].dim() - len(s)], -1)
                             for k, s in self.keys.mlp.items()], -1)
            outs.append(self.mlp(symlog(vec)))
        return torch.cat(outs, -1)


class Decoder(nn.Module):
    """Reconstructs observations from model features; returns the summed loss per step.

    Vectors are predicted in symlog space with an MSE loss; images (scaled to
    [-0.5, 0.5]) with an MSE loss, both summed over their elements.
    """

    def __init__(self, keys: ObsKeys, feat: int, units: int, layers: int, depth: int, min_res: int, norm: str,
                 act: str) -> None:
        super().__init__()
        self.keys = keys
        self.cnns = nn.ModuleDict({k: ConvDecoder(feat, s, depth, min_res, norm, act) for k, s in keys.cnn.items()})  # type: ignore[arg-type]
        self.sizes = {k: int(math.prod(s)) for k, s in keys.mlp.items()}
        if keys.mlp:
            self.mlp = MLP(feat, units, layers, norm, act)
            self.out = nn.Linear(self.mlp.out_dim, sum(self.sizes.values()))
        else:
            self.mlp = None

    def forward(self, feat: Tensor) -> dict[str, Tensor]:
        preds = {k: cnn(feat) for k, cnn in self.cnns.items()}
        if self.mlp is not None:
            flat = self.out(self.mlp(feat))
            for (k, shape), part in zip(self.keys.mlp.items(), flat.split(list(self.sizes.values()), -1)):
                preds[k] = part.reshape(*feat.shape[:-1], *shape)
        return preds

    def loss(self, feat: Tensor, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = {}
        for k, pred in self(feat).items():
            if k in self.keys.cnn:
                target = obs[k].float() / 255.0 - 0.5
            else:
                target = symlog(obs[k].float())
            err = (pred.float() - target) ** 2
            losses[k] = err.reshape(*err.shape[: feat.dim() - 1], -1).sum(-1)
        return losses


def mse_to_image(pred: Tensor) -> Tensor:
    """Map a decoder image prediction back to uint8 pixels (for videos of the model's view)."""
    return ((pred.float() + 0.5).clamp(0, 1) * 255).to(torch.uint8)


def unimix_probs(logits: Tensor, unimix: float) -> Tensor:
    """Softmax over the last dim, mixed with `unimix` of the uniform distribution."""
    probs = F.softmax(logits.float(), -1)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def gumbel_noise(shape: torch.Size | tuple[int, ...], device: torch.device | str) -> Tensor:
    u = torch.rand(shape, device=device).clamp(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def onehot_sample_st(probs: Tensor, gumbel: Tensor | None = None) -> Tensor:
    """A one-hot sample of `probs` by the Gumbel-max trick, with straight-through gradients.

    Passing the Gumbel noise in makes the sample a deterministic function of its
    inputs (used by the ONNX export and its parity tests); it also avoids the host
    sync that torch.multinomial costs on CUDA.
    """
    if gumbel is None:
        gumbel = gumbel_noise(probs.shape, probs.device)
    index = torch.argmax(torch.log(probs) + gumbel, -1)
    sample = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
    return sample + probs - probs.detach()
