"""ViewSpec validation and the published preset numbers."""

import pytest
from sslfast.data_pipelines import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    ViewSpec,
    byol,
    emp_ssl,
    eval_spec,
    multicrop,
    preset,
    simclr,
    vicreg,
)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(crop_scale=(0.0, 1.0)), r"crop_scale .*0 < low <= high <= 1.*\(0.0, 1.0\)"),
        (dict(crop_scale=(0.5, 1.2)), r"crop_scale"),
        (dict(crop_scale=(0.8, 0.5)), r"crop_scale"),
        (dict(crop_ratio=(0.0, 1.0)), r"crop_ratio"),
        (dict(flip_p=1.5), r"flip_p must be a probability in \[0, 1\], got 1.5"),
        (dict(jitter_p=-0.1), r"jitter_p"),
        (dict(grayscale_p=2), r"grayscale_p"),
        (dict(blur_p=True), r"blur_p"),
        (dict(solarize_p=1.01), r"solarize_p"),
        (dict(jitter=(0.4, -0.4, 0.4, 0.1)), r"jitter must be 4 non-negative"),
        (dict(jitter=(0.4, 0.4, 0.4, 0.6)), r"hue <= 0.5"),
        (dict(jitter=(0.4, 0.4, 0.4)), r"jitter must be 4"),
        (dict(blur_sigma=(0.0, 2.0)), r"blur_sigma"),
        (dict(blur_kernel=4), r"blur_kernel must be None or an odd"),
        (dict(size=0), r"size must be a positive int, got 0"),
        (dict(std=(0.2, 0.0, 0.2)), r"std must be positive"),
        (dict(mean=(0.5, 0.5)), r"mean must be 3 finite numbers"),
        # non-finite numbers: a NaN mean or jitter factor turns every view into NaN or garbage
        (dict(jitter=(float("nan"), 0.4, 0.4, 0.1)), r"jitter must be 4 finite numbers.*NaN and infinities"),
        (dict(jitter=(0.4, 0.4, float("inf"), 0.1)), r"jitter must be 4 finite numbers"),
        (dict(mean=(0.5, float("nan"), 0.5)), r"mean must be 3 finite numbers"),
        (dict(std=(0.2, 0.2, float("inf"))), r"std must be 3 finite positive numbers"),
        (dict(blur_sigma=(0.1, float("inf"))), r"blur_sigma must be a pair \(low, high\) of finite numbers"),
        (dict(crop_ratio=(0.5, float("inf"))), r"crop_ratio must be a pair"),
        (dict(crop_scale=(float("nan"), 1.0)), r"crop_scale must be a pair"),
        (dict(solarize_threshold=float("nan")), r"solarize_threshold must be a number in \[0, 1\], got nan"),
    ],
)
def test_invalid_specs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViewSpec(**kwargs)


def test_spec_type_errors():
    with pytest.raises(TypeError, match="crop_scale must be a pair"):
        ViewSpec(crop_scale=0.5)
    with pytest.raises(TypeError, match="mean must be 3 finite numbers"):
        ViewSpec(mean="abc")  # iterable, three items, not numbers
    with pytest.raises(TypeError, match="std must be 3 finite positive numbers"):
        ViewSpec(std=0.5)
    with pytest.raises(TypeError, match="jitter must be 4 finite numbers"):
        ViewSpec(jitter=(0.4, "0.4", 0.4, 0.1))
    with pytest.raises(ValueError, match="solarize_threshold must be a number"):
        ViewSpec(solarize_threshold="0.5")


def test_numpy_scalars_are_numbers():
    np = pytest.importorskip("numpy")
    spec = ViewSpec(mean=np.array(CIFAR10_MEAN, dtype=np.float32), flip_p=np.float32(0.5), jitter=np.full(4, 0.1))
    assert spec.mean == tuple(float(np.float32(m)) for m in CIFAR10_MEAN) and spec.flip_p == 0.5


def test_specs_hash_and_compare_by_value():
    a, b = ViewSpec(crop_scale=[0.2, 1]), ViewSpec(crop_scale=(0.2, 1.0))
    assert a == b and hash(a) == hash(b)
    assert a.replace(name="x") == a  # the name is a label, not a parameter


def test_kernel_size():
    assert ViewSpec(blur_sigma=(0.1, 2.0)).kernel_size == 13
    assert ViewSpec(size=8, blur_sigma=(0.1, 2.0)).kernel_size == 7
    assert ViewSpec(size=224, blur_kernel=23).kernel_size == 23


def test_simclr_cifar_and_imagenet():
    v1, v2 = simclr("cifar10")
    assert v1 == v2
    assert (v1.size, v1.crop_scale, v1.flip_p) == (32, (0.08, 1.0), 0.5)
    assert (v1.jitter, v1.jitter_p, v1.grayscale_p, v1.blur_p, v1.solarize_p) == ((0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0, 0)
    assert (v1.mean, v1.std) == (CIFAR10_MEAN, CIFAR10_STD)
    im = simclr("imagenet")[0]
    assert (im.size, im.jitter, im.blur_p, im.kernel_size, im.mean) == (
        224,
        (0.8, 0.8, 0.8, 0.2),
        0.5,
        23,
        IMAGENET_MEAN,
    )


def test_byol_vicreg_asymmetry():
    for fn in (byol, vicreg):
        a, b = fn("imagenet")
        assert (a.blur_p, b.blur_p, a.solarize_p, b.solarize_p) == (1.0, 0.1, 0.0, 0.2)
        assert a.jitter == b.jitter == (0.4, 0.4, 0.2, 0.1) and a.jitter_p == 0.8 and a.grayscale_p == 0.2
        assert a.crop_scale == (0.08, 1.0) and a.size == 224
    a, b = byol("cifar10")
    assert (a.solarize_p, b.solarize_p, a.blur_p, b.blur_p, a.size) == (0.0, 0.2, 0.0, 0.0, 32)
    a, b = vicreg("cifar10")
    assert a.crop_scale == (0.2, 1.0) and a.jitter == (0.4, 0.4, 0.2, 0.1) and a.solarize_p == b.solarize_p == 0.1


def test_multicrop_and_emp_ssl_and_eval():
    views = multicrop()
    assert [v.size for v in views] == [224] * 2 + [96] * 6
    assert views[0].crop_scale == (0.14, 1.0) and views[-1].crop_scale == (0.05, 0.14)
    patches = emp_ssl(20)
    assert len(patches) == 20 and len(set(patches)) == 1
    p = patches[0]
    assert (p.size, p.crop_scale, p.crop_ratio, p.jitter, p.jitter_p) == (
        32,
        (0.25, 0.25),
        (1.0, 1.0),
        (0.4, 0.4, 0.4, 0.2),
        0.8,
    )
    assert (p.grayscale_p, p.blur_p, p.solarize_p, p.mean, p.std) == (0.2, 0.1, 0.1, (0.5,) * 3, (0.5,) * 3)
    (e,) = eval_spec()
    assert (e.flip_p, e.jitter_p, e.grayscale_p, e.blur_p, e.solarize_p, e.crop_scale) == (0, 0, 0, 0, 0, (1.0, 1.0))
    assert preset("emp_ssl", n_patches=4) == emp_ssl(4)
    with pytest.raises(ValueError, match="unknown preset 'mocov9'"):
        preset("mocov9")
    with pytest.raises(ValueError, match="dataset must be one of"):
        simclr("mnist")
    with pytest.raises(ValueError, match="n_patches must be a positive int"):
        emp_ssl(0)
