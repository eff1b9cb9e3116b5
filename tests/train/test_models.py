"""Backbones and heads: shapes, published parameter counts, init options, compile/bf16/channels_last."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err
from torch import nn

from sslfast.train.models import (
    BACKBONES,
    BasicBlock,
    Bottleneck,
    VisionTransformer,
    build_backbone,
    count_parameters,
    predictor,
    projector,
)

# torchvision / DeiT totals minus their 1000-class heads (512*1000+1000, 2048*1000+1000,
# 192*1000+1000, 384*1000+1000): independent numbers for the classifier-free trunks.
PUBLISHED = {
    "resnet18": (11_689_512 - 513_000, 512),
    "resnet50": (25_557_032 - 2_049_000, 2048),
    "vit_tiny": (5_717_416 - 193_000, 192),
    "vit_small": (22_050_664 - 385_000, 384),
    # CIFAR stem: 3x3x3x64 conv instead of 7x7x3x64.
    "resnet18_cifar": (11_689_512 - 513_000 - (7 * 7 - 3 * 3) * 3 * 64, 512),
    "resnet50_cifar": (25_557_032 - 2_049_000 - (7 * 7 - 3 * 3) * 3 * 64, 2048),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_parameter_counts_match_published_architectures(name):
    model = build_backbone(name)
    n_params, feat_dim = PUBLISHED[name]
    assert count_parameters(model) == n_params
    assert model.feat_dim == feat_dim


def _stage_shapes(model, x):
    shapes = []
    hooks = [
        getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
        for i in range(1, 5)
    ]
    out = model(x)
    for h in hooks:
        h.remove()
    return out, shapes


def test_cifar_stem_keeps_resolution_imagenet_stem_downsamples():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    out, shapes = _stage_shapes(build_backbone("resnet18_cifar", width=8), x)
    assert out.shape == (2, 64)
    assert shapes == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]
    out, shapes = _stage_shapes(build_backbone("resnet18", width=8), torch.randn(2, 3, 64, 64))
    assert shapes[0] == (2, 8, 16, 16) and shapes[-1] == (2, 64, 2, 2)
    out, _ = _stage_shapes(build_backbone("resnet50_cifar", width=4), x)
    assert out.shape == (2, 4 * 8 * 4)


def test_full_width_resnet18_cifar_forward_is_pooled_features():
    torch.manual_seed(0)
    model = build_backbone("resnet18_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 512) and out.dtype == torch.float32
    # Pooling is the spatial mean of the last stage (post-ReLU, so non-negative).
    feats = {}
    h = model.layer4.register_forward_hook(lambda m, i, o: feats.setdefault("x", o))
    model(x)
    h.remove()
    assert torch.allclose(out, feats["x"].mean((2, 3)))
    assert (out >= 0).all() and out.abs().sum() > 0


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_zero_init_residual_makes_each_block_the_identity(block):
    torch.manual_seed(0)
    name = "resnet18_cifar" if block is BasicBlock else "resnet50_cifar"
    model = build_backbone(name, width=4, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, block)]
    assert blocks and all(torch.all(b.last_bn().weight == 0) for b in blocks)
    # Non-downsampling block: relu(0 + x) == x for the non-negative input it receives.
    b = model.layer1[1]
    x = torch.rand(2, b.conv1.in_channels, 8, 8)
    assert torch.equal(b(x), x)
    # Without the option the gammas are 1 and the block is not the identity.
    plain = build_backbone(name, width=4).eval()
    assert torch.all(plain.layer1[1].last_bn().weight == 1)
    assert not torch.allclose(plain.layer1[1](x), x)


def test_channels_last_and_bf16_autocast_resnet():
    torch.manual_seed(0)
    model = build_backbone("resnet18_cifar", width=8).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert rel_err(out_cl, ref) < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert out_bf16.dtype == torch.bfloat16
    assert torch.isfinite(out_bf16.float()).all()
    assert rel_err(out_bf16, ref) < 5e-2


def test_vit_patch4_forward_and_multicrop_sizes():
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", patch_size=4).eval()
    assert vit.grid == 8 and vit.pos_embed.shape == (1, 65, 192)
    for size in (32, 16, 24):
        out = vit(torch.randn(2, 3, size, size))
        assert out.shape == (2, 192) and torch.isfinite(out).all()
    # Non-square input works too.
    assert vit(torch.randn(1, 3, 16, 32)).shape == (1, 192)
    small = build_backbone("vit_small", patch_size=16, img_size=32)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 384)


def test_vit_pos_embed_native_size_is_stored_and_interpolation_is_smooth():
    torch.manual_seed(0)
    vit = VisionTransformer(embed_dim=16, depth=1, num_heads=2, patch_size=4, img_size=32)
    assert vit._pos_embed(8, 8) is vit.pos_embed
    with torch.no_grad():
        # A constant patch field stays constant under bicubic resizing; cls slot is kept.
        vit.pos_embed[:, 1:] = 0.5
        vit.pos_embed[:, 0] = -1.0
    pe = vit._pos_embed(12, 6)
    assert pe.shape == (1, 1 + 72, 16)
    assert torch.all(pe[:, 0] == -1.0)
    assert torch.allclose(pe[:, 1:], torch.full_like(pe[:, 1:], 0.5), atol=1e-6)
    # A linear ramp in x: upsampled to twice the grid it stays monotonic in x.
    with torch.no_grad():
        ramp = torch.arange(8.0).repeat(8)
        vit.pos_embed[0, 1:, :] = ramp[:, None]
    up = vit._pos_embed(16, 16)[0, 1:, 0].view(16, 16)
    assert (up[:, 1:] >= up[:, :-1] - 1e-5).all()


def test_vit_attention_matches_explicit_softmax_attention():
    torch.manual_seed(0)
    vit = VisionTransformer(embed_dim=24, depth=1, num_heads=3, patch_size=4, img_size=8).double()
    attn = vit.blocks[0].attn
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    q, k, v = attn.qkv(x).view(2, 5, 3, 3, 8).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    ref = attn.proj((a @ v).transpose(1, 2).reshape(2, 5, 24))
    assert rel_err(attn(x), ref) < 1e-12


def test_vit_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    vit = VisionTransformer(embed_dim=32, depth=2, num_heads=2, patch_size=4, img_size=16).eval()
    x = torch.randn(3, 3, 16, 16)
    ref = vit(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vit(x.contiguous(memory_format=torch.channels_last))
    assert rel_err(out, ref) < 5e-2


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    vit = VisionTransformer(embed_dim=16, depth=2, num_heads=2, patch_size=4, img_size=8, drop_path_rate=0.5)
    x = torch.randn(64, 3, 8, 8)
    vit.eval()
    assert torch.equal(vit(x), vit(x))
    vit.train()
    assert not torch.equal(vit(x), vit(x))


@pytest.mark.slow
def test_compile_fullgraph_matches_eager_forward_and_backward():
    # aot_eager traces the whole graph (dynamo fullgraph + AOT autograd) without inductor's C++
    # build, which takes minutes on a 2-core CPU; the training step is tested with inductor on GPU.
    torch.manual_seed(0)
    for model, shape in (
        (build_backbone("resnet18_cifar", width=4), (2, 3, 16, 16)),
        (VisionTransformer(embed_dim=32, depth=2, num_heads=2, patch_size=4, img_size=16), (2, 3, 16, 16)),
    ):
        model = model.to(memory_format=torch.channels_last)
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        out_c = compiled(x)
        out_c.square().sum().backward()
        grads_c = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        out_e = model(x)
        out_e.square().sum().backward()
        assert rel_err(out_c, out_e) < 1e-6
        for gc, p in zip(grads_c, model.parameters(), strict=True):
            assert rel_err(gc, p.grad) < 1e-5


def test_projector_layers_and_options():
    torch.manual_seed(0)
    head = projector(8, [16, 12], 4)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].bias is None and head[3].bias is None and head[6].bias is not None
    assert [head[0].in_features, head[0].out_features, head[3].out_features, head[6].out_features] == [
        8,
        16,
        12,
        4,
    ]
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 4)

    bn_head = projector(8, 16, 4, last_bn=True).train()
    assert isinstance(bn_head[-1], nn.BatchNorm1d) and not bn_head[-1].affine and bn_head[-2].bias is None
    z = bn_head(torch.randn(32, 8))
    assert torch.allclose(z.mean(0), torch.zeros(4), atol=1e-5)

    no_bn = projector(8, [16], 4, batch_norm=False)
    assert [type(m) for m in no_bn] == [nn.Linear, nn.ReLU, nn.Linear] and no_bn[0].bias is not None
    assert [type(m) for m in projector(8, [], 4)] == [nn.Linear]

    pred = predictor(6, 3)
    assert pred[0].in_features == 6 and pred[0].out_features == 3 and pred[-1].out_features == 6
    assert predictor(6, 3, 2)(torch.randn(4, 6)).shape == (4, 2)


def test_backbone_plus_projector_trains_one_step():
    torch.manual_seed(0)
    bb = build_backbone("resnet18_cifar", width=4)
    head = projector(bb.feat_dim, [16], 8)
    model = nn.Sequential(bb, head)
    x = torch.randn(4, 3, 16, 16)
    loss = F.mse_loss(model(x), torch.randn(4, 8))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------------------ bad input


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="unknown backbone 'resnet34'.*resnet18_cifar.*vit_tiny"):
        build_backbone("resnet34")
    with pytest.raises(TypeError, match="name must be a str"):
        build_backbone(18)
    with pytest.raises(TypeError, match="build_backbone\\('resnet18'\\).*patch_size"):
        build_backbone("resnet18", patch_size=4)


def test_bad_images_raise_clear_errors():
    model = build_backbone("resnet18_cifar", width=4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*3-d.*\(3, 32, 32\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"3 channels.*\(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    vit = VisionTransformer(embed_dim=16, depth=1, num_heads=2, patch_size=4, img_size=16)
    with pytest.raises(ValueError, match=r"multiples of patch_size=4.*\(1, 3, 18, 16\)"):
        vit(torch.randn(1, 3, 18, 16))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        VisionTransformer(embed_dim=10, depth=1, num_heads=3)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VisionTransformer(embed_dim=12, depth=1, num_heads=3, patch_size=5, img_size=32)
    with pytest.raises(ValueError, match="width must be a positive int"):
        build_backbone("resnet18", width=0)
    with pytest.raises(ValueError, match="hidden_dims must hold positive ints"):
        projector(8, [16, 0], 4)
    with pytest.raises(TypeError, match="hidden_dims must be an int or a sequence"):
        projector(8, "16", 4)
