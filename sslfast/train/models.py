"""Backbones and heads for self-supervised learning, in plain PyTorch (no torchvision).

Every backbone maps images (N, C, H, W) to pooled features (N, feat_dim) and exposes
``feat_dim``. The forward passes have no data-dependent Python control flow and no host
syncs, so they run under ``torch.compile(fullgraph=True)``, bf16 autocast and channels_last.

- ResNet: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016. The CIFAR
  variant (3x3 stride-1 stem, no max-pool) is the one used by SimCLR, solo-learn and lightly.
- ViT: Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021; Tiny/Small widths
  from DeiT (Touvron et al., ICML 2021), as in DINO and MoCo v3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "VisionTransformer",
    "build_backbone",
    "count_parameters",
    "predictor",
    "projector",
    "resnet18",
    "resnet18_cifar",
    "resnet50",
    "resnet50_cifar",
    "vit_small",
    "vit_tiny",
]


def _check_images(x, in_channels: int, name: str = "x") -> None:
    # Shape checks only: they become static guards under torch.compile, never host syncs.
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point image batch (normalise uint8 images first), got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name} must have {in_channels} channels (N, {in_channels}, H, W), got shape {tuple(x.shape)}"
        )


# --------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity (or 1x1-projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as in torchvision's "ResNet v1.5"), 1x1 expand x4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    """ResNet trunk without the classifier: ``forward(x) -> (N, feat_dim)`` (global average pool).

    ``stem="cifar"``: 3x3 stride-1 conv, no max-pool (32x32 inputs keep a 4x4 final map).
    ``stem="imagenet"``: 7x7 stride-2 conv + 3x3 stride-2 max-pool.
    ``width`` is the first stage's channel count (64 in the paper); smaller values give
    tiny models for tests. ``zero_init_residual`` sets the last BN gamma of every block to 0,
    so each block starts as the identity (Goyal et al., 2017, "Accurate, Large Minibatch SGD").
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        stem: str = "imagenet",
        width: int = 64,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        self.in_channels = in_channels
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_planes = [], width
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feat_dim = in_planes

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # mean over H, W works for any memory format and gives a contiguous (N, C) result.
        return x.mean(dim=(2, 3))


def resnet18_cifar(**kw) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), stem="cifar", **kw)


def resnet50_cifar(**kw) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), stem="cifar", **kw)


def resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), stem="imagenet", **kw)


def resnet50(**kw) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), stem="imagenet", **kw)


# --------------------------------------------------------------------------------------------
# Vision Transformer
# --------------------------------------------------------------------------------------------


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al., 2016): drop the residual branch with prob p."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)
        return x * mask.bernoulli_(keep).div_(keep)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        # SDPA dispatches to flash / memory-efficient attention on GPU.
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT encoder returning the final-LayerNorm cls token, ``forward(x) -> (N, embed_dim)``.

    The learned position embedding is stored for ``img_size // patch_size`` patches per side
    and bicubically interpolated for other input sizes (multi-crop: 96 and 224 crops), as in
    DINO. The interpolation depends only on the input's static shape, so a compiled model
    specialises per crop size instead of breaking the graph.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_size: int = 16,
        img_size: int | None = None,
        in_channels: int = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        for name, v in (
            ("embed_dim", embed_dim),
            ("depth", depth),
            ("num_heads", num_heads),
            ("patch_size", patch_size),
            ("in_channels", in_channels),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if img_size is None:
            # Small patches mean CIFAR-sized inputs; 16/14-pixel patches mean ImageNet crops.
            img_size = 32 if patch_size < 8 else 224
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.feat_dim = self.embed_dim = embed_dim

        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()  # linearly growing, as in DeiT
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Patch embedding initialised like a Linear on the flattened patch (MAE / MoCo v3).
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        if gh == self.grid and gw == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        d = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=(gh, gw), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.to(cls_pos.dtype).permute(0, 2, 3, 1).reshape(1, gh * gw, d)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels)
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"x height and width must be multiples of patch_size={self.patch_size}, got shape {tuple(x.shape)}"
            )
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, gh*gw, D)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x), dim=1)
        x = x + self._pos_embed(h // self.patch_size, w // self.patch_size)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x[:, 0])


def vit_tiny(*, patch_size: int = 16, **kw) -> VisionTransformer:
    """ViT-Ti/``patch_size`` (DeiT): 192 wide, 12 blocks, 3 heads; keyword overrides shrink it for CPU tests."""
    return VisionTransformer(**{"embed_dim": 192, "depth": 12, "num_heads": 3, **kw}, patch_size=patch_size)


def vit_small(*, patch_size: int = 16, **kw) -> VisionTransformer:
    """ViT-S/``patch_size`` (DeiT): 384 wide, 12 blocks, 6 heads."""
    return VisionTransformer(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **kw}, patch_size=patch_size)


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------


def _dims(value, name: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(value).__name__}")
    out = list(value)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return out


def projector(
    in_dim: int,
    hidden_dims: int | Sequence[int],
    out_dim: int,
    *,
    batch_norm: bool = True,
    last_bn: bool = False,
    final_bias: bool | None = None,
) -> nn.Sequential:
    """MLP head ``Linear-BN-ReLU (per hidden width) ... Linear [-BN]``.

    - VICReg 8192-8192-8192: ``projector(512, [8192, 8192], 8192)``.
    - Barlow Twins: same shape; SimCLR: ``projector(512, [2048], 128)``.
    - SimSiam / MoCo v3: ``last_bn=True`` adds a non-affine BatchNorm on the output, as in their
      official code. Hidden Linears drop their bias when a BN follows (it would be cancelled);
      the final Linear has a bias unless ``last_bn`` (override with ``final_bias``).
    ``hidden_dims=[]`` gives a single Linear.
    """
    in_dim = _dims(in_dim, "in_dim")[0]
    out_dim = _dims(out_dim, "out_dim")[0]
    hidden = [] if isinstance(hidden_dims, Sequence) and len(hidden_dims) == 0 else _dims(hidden_dims, "hidden_dims")
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden:
        layers.append(nn.Linear(prev, h, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU(inplace=True))
        prev = h
    layers.append(nn.Linear(prev, out_dim, bias=(not last_bn) if final_bias is None else final_bias))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def predictor(in_dim: int, hidden_dim: int, out_dim: int | None = None) -> nn.Sequential:
    """BYOL / SimSiam predictor ``Linear-BN-ReLU-Linear`` (e.g. BYOL 256-4096-256, SimSiam 2048-512-2048)."""
    return projector(in_dim, [hidden_dim], in_dim if out_dim is None else out_dim)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18_cifar": resnet18_cifar,
    "resnet50_cifar": resnet50_cifar,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
}


def build_backbone(name: str, **kw) -> nn.Module:
    """Backbone by name, e.g. ``build_backbone("vit_tiny", patch_size=4)`` for 32x32 images.

    ResNets take ``width``, ``in_channels``, ``zero_init_residual``; ViTs take ``patch_size``,
    ``img_size``, ``in_channels``, ``mlp_ratio``, ``drop_path_rate``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(sorted(BACKBONES))}")
    try:
        return BACKBONES[name](**kw)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"build_backbone({name!r}): {e}") from None
        raise


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
