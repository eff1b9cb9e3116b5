"""Fused view generation: parameter statistics, per-op semantics against independent
formulas, Triton == torch for the same parameters (interpreter on CPU), reproducibility."""

import colorsys
import math

import pytest
import torch
import torch.nn.functional as F
from sslfast.data_pipelines import (
    ViewParams,
    ViewSpec,
    apply_views_torch,
    apply_views_triton,
    byol,
    emp_ssl,
    eval_spec,
    make_synthetic,
    make_views,
    multicrop,
    sample_params,
    simclr,
    vicreg,
)

# Every op on: the comparisons then exercise each branch of the kernel.
ALL_ON = ViewSpec(
    size=32,
    crop_scale=(0.08, 1.0),
    flip_p=0.5,
    jitter=(0.4, 0.4, 0.4, 0.1),
    jitter_p=0.9,
    grayscale_p=0.3,
    solarize_p=0.5,
)
IDENTITY = dict(
    flip_p=0.0,
    jitter_p=0.0,
    grayscale_p=0.0,
    blur_p=0.0,
    solarize_p=0.0,
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)


def gen(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(scope="module")
def images():
    return make_synthetic(4, seed=3).images


def rand_images(n=4, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), generator=gen(seed), dtype=torch.uint8)


def unnormalize(x, spec):
    mean = torch.tensor(spec.mean)[None, :, None, None]
    std = torch.tensor(spec.std)[None, :, None, None]
    return x.float() * std + mean


# ----------------------------------------------------------------------------- input checks


def test_bad_inputs_name_argument_and_shapes(images):
    with pytest.raises(TypeError, match=r"images must have dtype torch.uint8.*float32"):
        make_views(images.float(), simclr())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(3, 32, 32\)"):
        make_views(images[0], simclr())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(4, 1, 32, 32\)"):
        make_views(images[:, :1], simclr())
    with pytest.raises(TypeError, match="specs\\[1\\] must be a ViewSpec"):
        make_views(images, [simclr()[0], "x"])
    with pytest.raises(ValueError, match="backend must be one of"):
        make_views(images, simclr(), backend="cuda")
    with pytest.raises(TypeError, match="out_dtype"):
        make_views(images, simclr(), out_dtype=torch.int8)
    p = sample_params(simclr()[0], 3, gen())
    with pytest.raises(ValueError, match="not a multiple of the batch size 4"):
        apply_views_torch(images, simclr()[0], p)


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("specs", [simclr(), byol(), vicreg(), emp_ssl(3), eval_spec(), simclr("imagenet")[:1]])
def test_shapes_dtypes_layout_and_range(images, specs):
    views = make_views(images, specs, generator=gen(), backend="torch")
    assert len(views) == len(specs)
    for v, s in zip(views, specs):
        assert v.shape == (4, 3, s.size, s.size) and v.dtype == torch.float32
        assert v.is_contiguous(memory_format=torch.channels_last)
        x = unnormalize(v, s)  # back to pixel scale: must stay in [0, 1]
        assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5
    bf = make_views(images, specs[:1], generator=gen(), backend="torch", out_dtype=torch.bfloat16)[0]
    assert bf.dtype == torch.bfloat16 and bf.is_contiguous(memory_format=torch.channels_last)


def test_multicrop_sizes():
    imgs = rand_images(2, 64, 80)
    views = make_views(imgs, multicrop(global_size=40, local_size=16), generator=gen(), backend="torch")
    assert [v.shape[-1] for v in views] == [40, 40] + [16] * 6


# ----------------------------------------------------------------------------- parameter statistics

N_STAT = 20000


def sigma_bound(p, n=N_STAT):
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_param_statistics():
    spec = ViewSpec(
        crop_scale=(0.2, 0.6),
        crop_ratio=(0.5, 2.0),
        flip_p=0.3,
        jitter=(0.4, 0.3, 0.2, 0.1),
        jitter_p=0.7,
        grayscale_p=0.2,
        blur_p=0.4,
        blur_sigma=(0.5, 1.5),
        solarize_p=0.15,
    )
    H, W = 64, 48
    p = sample_params(spec, N_STAT, gen(1), "cpu", (H, W))
    for name, prob in [("flip", 0.3), ("jitter", 0.7), ("gray", 0.2), ("blur", 0.4), ("solarize", 0.15)]:
        rate = getattr(p, name).float().mean().item()
        assert abs(rate - prob) < sigma_bound(prob), (name, rate, prob)
    top, left, h, w = p.crop.long().unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    # w, h are rounded from sqrt(area*ratio): allow the rounding slack of one pixel per side
    area = (h * w).double()
    lo = (torch.sqrt(torch.tensor(0.2 * H * W * 0.5)) - 0.5) * (torch.sqrt(torch.tensor(0.2 * H * W / 2.0)) - 0.5)
    assert (area >= lo).all() and (
        area <= ((math.sqrt(0.6 * H * W * 2) + 0.5) * (math.sqrt(0.6 * H * W / 2) + 0.5))
    ).all()
    frac = area / (H * W)
    assert frac.min() < 0.25 and frac.max() > 0.55  # the whole scale range is used
    ratio = w.double() / h.double()
    assert (ratio > 0.5 * 0.85).all() and (ratio < 2.0 / 0.85).all()
    f = p.factors
    assert (f[:, 0] >= 0.6).all() and (f[:, 0] <= 1.4).all() and (f[:, 1] >= 0.7).all() and (f[:, 1] <= 1.3).all()
    assert (f[:, 2] >= 0.8).all() and (f[:, 2] <= 1.2).all() and (f[:, 3].abs() <= 0.1).all()
    assert abs(f[:, 0].mean().item() - 1.0) < 0.01 and abs(f[:, 3].mean().item()) < 0.003
    assert (p.sigma >= 0.5).all() and (p.sigma <= 1.5).all()
    # orders are permutations, and every op leads in about a quarter of the samples
    assert torch.equal(p.order.sort(dim=1).values, torch.arange(4).expand(N_STAT, 4).to(torch.int32))
    lead = torch.bincount(p.order[:, 0].long(), minlength=4).float() / N_STAT
    assert (lead - 0.25).abs().max() < sigma_bound(0.25)


def test_crop_in_scale_bounds_on_square_images():
    spec = simclr()[0]
    p = sample_params(spec, N_STAT, gen(2), "cpu", (32, 32))
    frac = (p.crop[:, 2] * p.crop[:, 3]).double() / 1024
    # same rounding slack as torchvision: at most one pixel per side around the scale bounds
    assert frac.min() >= (math.sqrt(0.08 * 1024 * 3 / 4) - 0.5) * (math.sqrt(0.08 * 1024 * 4 / 3) - 0.5) / 1024 - 1e-9
    assert frac.max() <= 1.0


def test_fixed_order_and_crop_fallback():
    spec = ViewSpec(jitter_random_order=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    p = sample_params(spec, 100, gen(), "cpu", (32, 48))
    assert torch.equal(p.order, torch.arange(4, dtype=torch.int32).expand(100, 4))
    # no 1:1 box of the full area fits a 32x48 image: torchvision's central fallback
    assert torch.equal(p.crop, torch.tensor([0, 8, 32, 32], dtype=torch.int32).expand(100, 4))
    emp = sample_params(emp_ssl(1)[0], 500, gen(), "cpu", (32, 32))
    assert (emp.crop[:, 2] == 16).all() and (emp.crop[:, 3] == 16).all()  # 25% area, 1:1


# ----------------------------------------------------------------------------- per-op semantics


def forced(spec, n, **fields):
    """Params with every random choice of ``spec`` drawn, then some fields overridden."""
    p = sample_params(spec, n, gen(5), "cpu", (32, 32))
    for k, v in fields.items():
        setattr(p, k, v)
    return p


def test_eval_is_exact_normalisation(images):
    spec = eval_spec()[0]
    v = make_views(images, spec, backend="torch")
    ref = (images.float() / 255 - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    torch.testing.assert_close(v, ref, atol=1e-6, rtol=0)


def test_crop_resize_matches_interpolate_and_flip(images):
    spec = ViewSpec(**{**IDENTITY, "size": 24})
    crops = torch.tensor([[0, 0, 32, 32], [5, 3, 20, 27], [10, 2, 9, 30], [1, 1, 31, 12]], dtype=torch.int32)
    p = forced(spec, 4, crop=crops, flip=torch.tensor([False, True, False, True]))
    out = apply_views_torch(images, spec, p)
    for k, (t, l, h, w) in enumerate(crops.tolist()):
        ref = F.interpolate(
            images[k : k + 1, :, t : t + h, l : l + w].float() / 255,
            size=(24, 24),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )
        if p.flip[k]:
            ref = ref.flip(-1)
        torch.testing.assert_close(out[k : k + 1], ref, atol=2e-6, rtol=0)


def test_colour_ops_match_textbook_formulas(images):
    spec = ViewSpec(**IDENTITY)
    x = images.float() / 255
    order = torch.arange(4, dtype=torch.int32).expand(4, 4).contiguous()
    on = torch.ones(4, dtype=torch.bool)

    def run(b=1.0, c=1.0, s=1.0, h=0.0):
        f = torch.tensor([[b, c, s, h]] * 4, dtype=torch.float32)
        return apply_views_torch(images, spec, forced(spec, 4, jitter=on, factors=f, order=order))

    gray = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    torch.testing.assert_close(run(b=1.3), (1.3 * x).clamp(0, 1), atol=1e-6, rtol=0)
    m = gray.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(run(c=0.6), (0.6 * x + 0.4 * m).clamp(0, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(run(s=1.4), (1.4 * x + (-0.4) * gray).clamp(0, 1), atol=1e-6, rtol=0)
    # hue against Python's colorsys on a patch of pixels
    out = run(h=0.13)
    for k in range(2):
        for yy, xx in [(0, 0), (5, 7), (16, 16), (31, 2), (20, 29)]:
            r, g, b = x[k, :, yy, xx].tolist()
            hh, ss, vv = colorsys.rgb_to_hsv(r, g, b)
            ref = colorsys.hsv_to_rgb((hh + 0.13) % 1.0, ss, vv)
            torch.testing.assert_close(out[k, :, yy, xx], torch.tensor(ref, dtype=torch.float32), atol=1e-5, rtol=0)


def test_contrast_mean_follows_the_order(images):
    """Brightness then contrast uses the brightened image's mean; the reverse order does not."""
    spec = ViewSpec(**IDENTITY)
    x = images.float() / 255
    f = torch.tensor([[1.5, 0.5, 1.0, 0.0]] * 4)
    bc = torch.tensor([[0, 1, 2, 3]] * 4, dtype=torch.int32)
    cb = torch.tensor([[1, 0, 2, 3]] * 4, dtype=torch.int32)
    on = torch.ones(4, dtype=torch.bool)

    def gm(t):
        return (0.2989 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]).mean(dim=(1, 2))[:, None, None, None]

    y = (1.5 * x).clamp(0, 1)
    torch.testing.assert_close(
        apply_views_torch(images, spec, forced(spec, 4, jitter=on, factors=f, order=bc)),
        (0.5 * y + 0.5 * gm(y)).clamp(0, 1),
        atol=1e-6,
        rtol=0,
    )
    torch.testing.assert_close(
        apply_views_torch(images, spec, forced(spec, 4, jitter=on, factors=f, order=cb)),
        (1.5 * (0.5 * x + 0.5 * gm(x)).clamp(0, 1)).clamp(0, 1),
        atol=1e-6,
        rtol=0,
    )


def test_grayscale_channels_equal():
    imgs = rand_images(64)
    spec = ViewSpec(grayscale_p=0.5)
    views, (p,) = make_views(imgs, [spec], generator=gen(7), backend="torch", return_params=True)
    x = unnormalize(views[0], spec)
    spread = (x.amax(dim=1) - x.amin(dim=1)).amax(dim=(1, 2))
    assert (spread[p.gray] < 1e-5).all()
    assert (spread[~p.gray] > 0.05).all()  # colour images stay colour
    assert 10 < p.gray.sum() < 54


def test_solarize_acts_only_above_threshold():
    imgs = rand_images(8)
    spec = ViewSpec(**{**IDENTITY, "solarize_p": 1.0, "solarize_threshold": 0.5})
    out = make_views(imgs, spec, backend="torch")
    x = imgs.float() / 255
    above = x >= 0.5
    torch.testing.assert_close(out[~above], x[~above], atol=0, rtol=0)
    torch.testing.assert_close(out[above], 1 - x[above], atol=1e-6, rtol=0)
    assert above.float().mean() > 0.3


def test_blur_is_gaussian():
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[0, :, 16, 16] = 255
    spec = ViewSpec(**{**IDENTITY, "blur_p": 1.0, "blur_sigma": (1.5, 1.5)})
    out = make_views(img, spec, backend="torch")[0, 0]
    k = spec.kernel_size
    assert k == 11
    t = torch.arange(k, dtype=torch.float64) - k // 2
    g = torch.exp(-0.5 * (t / 1.5) ** 2)
    g = g / g.sum()
    ref = torch.zeros(32, 32, dtype=torch.float64)
    ref[16 - k // 2 : 16 + k // 2 + 1, 16 - k // 2 : 16 + k // 2 + 1] = torch.outer(g, g)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)
    assert abs(out.sum().item() - 1.0) < 1e-5


# ----------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_same_seed_same_output(images, backend):
    a = make_views(images, byol(), generator=gen(11), backend=backend)
    b = make_views(images, byol(), generator=gen(11), backend=backend)
    c = make_views(images, byol(), generator=gen(12), backend=backend)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_params_reuse_and_grouping_equal_per_spec(images):
    specs = byol()
    views, params = make_views(images, specs, generator=gen(3), backend="torch", return_params=True)
    again = make_views(images, specs, params=params, backend="torch")
    for s, p, v, w in zip(specs, params, views, again):
        assert torch.equal(v, w)
        torch.testing.assert_close(apply_views_torch(images, s, p), v, atol=0, rtol=0)


# ----------------------------------------------------------------------------- Triton == torch


def assert_backends_agree(imgs, spec, params, out_dtype=torch.float32, atol=1e-4):
    ref = apply_views_torch(imgs, spec, params, out_dtype=out_dtype)
    out = apply_views_triton(imgs, spec, params, out_dtype=out_dtype)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), ref.float(), atol=atol, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_triton_matches_torch_all_ops(images, seed):
    p = sample_params(ALL_ON, 8, gen(seed), "cpu", (32, 32))  # 2 views per image
    assert p.jitter.any() and p.gray.any() and p.solarize.any() and p.flip.any() and (~p.flip).any()
    assert_backends_agree(images, ALL_ON, p)


def test_triton_matches_torch_blur_path_and_upsampling(images):
    spec = emp_ssl(1)[0].replace(blur_p=0.5, solarize_p=0.5)  # 16x16 patches upsampled to 32x32
    p = sample_params(spec, 4, gen(4), "cpu", (32, 32))
    assert p.blur.any() and (~p.blur).any()
    assert_backends_agree(images, spec, p)


def test_triton_matches_torch_downscale_non_square_bf16():
    imgs = rand_images(3, 40, 52, seed=9)
    spec = ALL_ON.replace(size=20, crop_scale=(0.5, 1.0), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25))
    p = sample_params(spec, 3, gen(8), "cpu", (40, 52))
    assert_backends_agree(imgs, spec, p)
    assert_backends_agree(imgs, spec, p, out_dtype=torch.bfloat16, atol=0.05)


def test_make_views_triton_equals_torch_for_a_seed(images):
    specs = byol()  # two specs, one launch
    a = make_views(images, specs, generator=gen(21), backend="triton")
    b = make_views(images, specs, generator=gen(21), backend="torch")
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=0)


def test_params_type_is_checked(images):
    with pytest.raises(TypeError, match="params must be ViewParams"):
        apply_views_triton(images, ALL_ON, {"crop": None})
    assert isinstance(sample_params(ALL_ON, 2, gen()), ViewParams)


# ----------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_gpu_triton_matches_torch_large_batch():
    dev = torch.device("cuda")
    imgs = make_synthetic(512, seed=0).images.to(dev)
    for specs in (simclr(), byol("imagenet"), emp_ssl(20)):
        g1, g2 = gen(0, "cuda"), gen(0, "cuda")
        a = make_views(imgs, specs, generator=g1, backend="triton")
        b = make_views(imgs, specs, generator=g2, backend="torch")
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-4, rtol=0)
        c = make_views(imgs, specs, generator=gen(0, "cuda"), backend="triton", out_dtype=torch.bfloat16)
        torch.testing.assert_close(c[0].float(), a[0], atol=0.05, rtol=0)
