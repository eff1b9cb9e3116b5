"""Triton kernel behind ``apply_views_triton``: crop + bilinear resize + flip + colour jitter
+ grayscale (+ solarize + normalisation) for one output view per program.

Imported lazily by ``gpu_augment`` so that importing sslfast never imports triton. Semantics
match ``_augment_torch`` op for op; floor is written with casts because the CPU interpreter
has no libdevice.
"""
import triton
import triton.language as tl


@triton.jit
def _clamp01(x):
    return tl.minimum(tl.maximum(x, 0.0), 1.0)


@triton.jit
def _floor(x):
    # floor without libdevice (the interpreter has none): truncate, then fix negatives
    t = x.to(tl.int32).to(tl.float32)
    return tl.where(t > x, t - 1.0, t)


@triton.jit
def _hue(r, g, b, shift):
    # torchvision _rgb2hsv, hue shift mod 1, _hsv2rgb
    maxc = tl.maximum(tl.maximum(r, g), b)
    minc = tl.minimum(tl.minimum(r, g), b)
    eqc = maxc == minc
    cr = maxc - minc
    s = cr / tl.where(eqc, 1.0, maxc)
    crd = tl.where(eqc, 1.0, cr)
    rc = (maxc - r) / crd
    gc = (maxc - g) / crd
    bc = (maxc - b) / crd
    hr = tl.where(maxc == r, bc - gc, 0.0)
    hg = tl.where((maxc == g) & (maxc != r), 2.0 + rc - bc, 0.0)
    hb = tl.where((maxc != g) & (maxc != r), 4.0 + gc - rc, 0.0)
    h = (hr + hg + hb) / 6.0 + 1.0
    h = h - _floor(h)
    h = h + shift
    h = h - _floor(h)
    v = maxc
    h6 = h * 6.0
    i = _floor(h6)
    f = h6 - i
    ii = i.to(tl.int32) % 6
    p = _clamp01(v * (1.0 - s))
    q = _clamp01(v * (1.0 - s * f))
    t = _clamp01(v * (1.0 - s * (1.0 - f)))
    r2 = tl.where(ii == 0, v, tl.where(ii == 1, q, tl.where(ii == 2, p, tl.where(ii == 3, p, tl.where(ii == 4, t, v)))))
    g2 = tl.where(ii == 0, t, tl.where(ii == 1, v, tl.where(ii == 2, v, tl.where(ii == 3, q, tl.where(ii == 4, p, p)))))
    b2 = tl.where(ii == 0, p, tl.where(ii == 1, p, tl.where(ii == 2, t, tl.where(ii == 3, v, tl.where(ii == 4, v, q)))))
    return r2, g2, b2


@triton.jit
def _jitter_op(r, g, b, op, fb, fc, fs, fh, mean):
    if op == 0:
        r = _clamp01(fb * r)
        g = _clamp01(fb * g)
        b = _clamp01(fb * b)
    elif op == 1:
        r = _clamp01(fc * r + (1.0 - fc) * mean)
        g = _clamp01(fc * g + (1.0 - fc) * mean)
        b = _clamp01(fc * b + (1.0 - fc) * mean)
    elif op == 2:
        l = 0.2989 * r + 0.587 * g + 0.114 * b  # noqa: E741
        r = _clamp01(fs * r + (1.0 - fs) * l)
        g = _clamp01(fs * g + (1.0 - fs) * l)
        b = _clamp01(fs * b + (1.0 - fs) * l)
    else:
        r, g, b = _hue(r, g, b, fh)
    return r, g, b


@triton.jit
def _sample(img, s_c, s_h, s_w, offs, mask, S, top, left, ch, cw, flip):
    # half-pixel bilinear resize inside the crop box (F.interpolate, align_corners=False)
    oy = offs // S
    ox = offs % S
    ox = tl.where(flip, S - 1 - ox, ox)
    sy = tl.maximum((ch.to(tl.float32) / S) * (oy.to(tl.float32) + 0.5) - 0.5, 0.0)
    sx = tl.maximum((cw.to(tl.float32) / S) * (ox.to(tl.float32) + 0.5) - 0.5, 0.0)
    y0 = tl.minimum(sy.to(tl.int32), ch - 1)
    x0 = tl.minimum(sx.to(tl.int32), cw - 1)
    y1 = y0 + (y0 < ch - 1).to(tl.int32)
    x1 = x0 + (x0 < cw - 1).to(tl.int32)
    ly1 = sy - y0.to(tl.float32)
    lx1 = sx - x0.to(tl.float32)
    ly0 = 1.0 - ly1
    lx0 = 1.0 - lx1
    r0 = (top + y0).to(tl.int64) * s_h
    r1 = (top + y1).to(tl.int64) * s_h
    c0 = (left + x0).to(tl.int64) * s_w
    c1 = (left + x1).to(tl.int64) * s_w
    p00 = tl.load(img + r0 + c0, mask=mask, other=0).to(tl.float32) / 255.0
    p01 = tl.load(img + r0 + c1, mask=mask, other=0).to(tl.float32) / 255.0
    p10 = tl.load(img + r1 + c0, mask=mask, other=0).to(tl.float32) / 255.0
    p11 = tl.load(img + r1 + c1, mask=mask, other=0).to(tl.float32) / 255.0
    red = ly0 * (lx0 * p00 + lx1 * p01) + ly1 * (lx0 * p10 + lx1 * p11)
    p00 = tl.load(img + s_c + r0 + c0, mask=mask, other=0).to(tl.float32) / 255.0
    p01 = tl.load(img + s_c + r0 + c1, mask=mask, other=0).to(tl.float32) / 255.0
    p10 = tl.load(img + s_c + r1 + c0, mask=mask, other=0).to(tl.float32) / 255.0
    p11 = tl.load(img + s_c + r1 + c1, mask=mask, other=0).to(tl.float32) / 255.0
    grn = ly0 * (lx0 * p00 + lx1 * p01) + ly1 * (lx0 * p10 + lx1 * p11)
    p00 = tl.load(img + 2 * s_c + r0 + c0, mask=mask, other=0).to(tl.float32) / 255.0
    p01 = tl.load(img + 2 * s_c + r0 + c1, mask=mask, other=0).to(tl.float32) / 255.0
    p10 = tl.load(img + 2 * s_c + r1 + c0, mask=mask, other=0).to(tl.float32) / 255.0
    p11 = tl.load(img + 2 * s_c + r1 + c1, mask=mask, other=0).to(tl.float32) / 255.0
    blu = ly0 * (lx0 * p00 + lx1 * p01) + ly1 * (lx0 * p10 + lx1 * p11)
    return red, grn, blu


@triton.jit
def _views_kernel(
    img_ptr, out_ptr, crop_ptr, flags_ptr, factors_ptr, order_ptr,
    N, S, s_n, s_c, s_h, s_w, o_n, o_c, o_h, o_w,
    m0, m1, m2, sd0, sd1, sd2, threshold,
    FINISH: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    img = img_ptr + (pid % N) * s_n
    top = tl.load(crop_ptr + pid * 4)
    left = tl.load(crop_ptr + pid * 4 + 1)
    ch = tl.load(crop_ptr + pid * 4 + 2)
    cw = tl.load(crop_ptr + pid * 4 + 3)
    flags = tl.load(flags_ptr + pid)
    flip = (flags & 1) != 0
    jit = (flags & 2) != 0
    gray = (flags & 4) != 0
    sol = (flags & 8) != 0
    fb = tl.load(factors_ptr + pid * 4)
    fc = tl.load(factors_ptr + pid * 4 + 1)
    fs = tl.load(factors_ptr + pid * 4 + 2)
    fh = tl.load(factors_ptr + pid * 4 + 3)
    op0 = tl.load(order_ptr + pid * 4)
    op1 = tl.load(order_ptr + pid * 4 + 1)
    op2 = tl.load(order_ptr + pid * 4 + 2)
    op3 = tl.load(order_ptr + pid * 4 + 3)
    pos_c = (op1 == 1).to(tl.int32) + 2 * (op2 == 1).to(tl.int32) + 3 * (op3 == 1).to(tl.int32)
    npix = S * S
    lanes = tl.arange(0, BLOCK)

    # Pass 1: grayscale mean of the image as contrast sees it (ops before contrast applied).
    mean = tl.zeros([BLOCK], dtype=tl.float32).sum(axis=0)
    if jit:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, npix, BLOCK):
            offs = start + lanes
            mask = offs < npix
            r, g, b = _sample(img, s_c, s_h, s_w, offs, mask, S, top, left, ch, cw, flip)
            if pos_c > 0:
                r, g, b = _jitter_op(r, g, b, op0, fb, fc, fs, fh, 0.0)
            if pos_c > 1:
                r, g, b = _jitter_op(r, g, b, op1, fb, fc, fs, fh, 0.0)
            if pos_c > 2:
                r, g, b = _jitter_op(r, g, b, op2, fb, fc, fs, fh, 0.0)
            acc += tl.where(mask, 0.2989 * r + 0.587 * g + 0.114 * b, 0.0)
        mean = tl.sum(acc, axis=0) / (S * S * 1.0)

    # Pass 2: everything, then store.
    for start in range(0, npix, BLOCK):
        offs = start + lanes
        mask = offs < npix
        r, g, b = _sample(img, s_c, s_h, s_w, offs, mask, S, top, left, ch, cw, flip)
        if jit:
            r, g, b = _jitter_op(r, g, b, op0, fb, fc, fs, fh, mean)
            r, g, b = _jitter_op(r, g, b, op1, fb, fc, fs, fh, mean)
            r, g, b = _jitter_op(r, g, b, op2, fb, fc, fs, fh, mean)
            r, g, b = _jitter_op(r, g, b, op3, fb, fc, fs, fh, mean)
        if gray:
            l = 0.2989 * r + 0.587 * g + 0.114 * b  # noqa: E741
            r = l
            g = l
            b = l
        if FINISH:
            if sol:
                r = tl.where(r >= threshold, 1.0 - r, r)
                g = tl.where(g >= threshold, 1.0 - g, g)
                b = tl.where(b >= threshold, 1.0 - b, b)
            r = (r - m0) / sd0
            g = (g - m1) / sd1
            b = (b - m2) / sd2
        oy = offs // S
        ox = offs % S
        dst = out_ptr + pid * o_n + oy.to(tl.int64) * o_h + ox.to(tl.int64) * o_w
        ty = out_ptr.dtype.element_ty
        tl.store(dst, r.to(ty), mask=mask)
        tl.store(dst + o_c, g.to(ty), mask=mask)
        tl.store(dst + 2 * o_c, b.to(ty), mask=mask)
