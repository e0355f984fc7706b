"""The streaming step of the causal Conv-TasNet, written once for both engines.

Two plain functions define it:

- :func:`forward`: the network over ``F`` new frames per channel (encoder,
  cLN, bottleneck plus the context analysis if the model has one, temporal blocks with carried depthwise history and cLN
  sums, mask, decoder), in the order of the offline model
  (:mod:`rtha.enhance.model`);
- :func:`stream_block`: one block of samples in, one out: cut the input into
  encoder frames, run the network, overlap-add the decoded frames, delay the
  dry input and mix it back.

Both call their operations through an ``ops`` argument.  numba compiles them
with the kernels below (:data:`NUMBA_LAYER_OPS`, :data:`NUMBA_BLOCK_OPS`;
:func:`process_block` is the one compiled call per block), and
:class:`rtha.enhance.engines.TorchEngine` runs the same source in Python with
torch operations of the same signatures (CUDA), and the framing kernels here.

Layout: features are time-major rows ``(C * F, channels)``, row ``c*F + f``
for stream (channel) ``c`` and new frame ``f``; a 1x1 conv's weight is
``(out, in)`` as in torch.  The records :class:`StreamWeights`,
:class:`NetState`, :class:`Scratch` and :class:`Framing` carry the arrays,
named as the functions use them.

Speed: a 1x1 conv is a matmul of only ``C * F`` rows (2 for a 4 ms block of
the lean models), where BLAS calls cost more than the arithmetic: OpenBLAS
has small-matrix kernels for AVX-512 only and runs ~2 GMAC/s at 2 rows on
AVX2.  :func:`dense` is compiled instead: tiles of rows by 4 outputs, ~15-25
GMAC/s on both (4 rows where AVX-512 gives 32 vector registers, 2 on AVX2's
16, see :data:`WIDE_TILES`).  With 1-2 frames per block every weight is
read once per block, so a model whose weights outgrow the core's L2 cache
streams them from L3 each block.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit, types
from numba.experimental import structref

from .config import CLN_EPS, CTX_EPS, CTX_POWER

FAST = {"reassoc", "contract"}  # vectorised sums and FMAs; no assumption about NaN/Inf


def target_has_avx512() -> bool:
    """Whether numba compiles for AVX-512 here (its target features: the host's, or ``NUMBA_CPU_FEATURES``)."""
    import llvmlite.binding as ll
    from numba.core import config

    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else ll.get_host_cpu_features().flatten()
    return "+avx512f" in features


#: :func:`dense`'s tile: 4 rows by 4 outputs needs 16 sums and 8 operands in vector registers, which
#: AVX-512's 32 hold and AVX2's 16 do not (the sums spill: 1.3-1.6x slower on an AMD EPYC). Fixed at
#: import, from the same features that numba compiles for and keys its cache by.
WIDE_TILES = target_has_avx512()


class StreamWeights(NamedTuple):
    """The weights of one source, as :func:`forward` reads them (numpy float32, or torch tensors).

    ``nb`` temporal blocks; 1x1 conv weights are ``(out, in)``.
    """

    enc: Any  # (N, L) encoder bases
    enc_b: Any  # (N,) zeros: the encoder has no bias
    feature_power: float  # the separator reads (enc**2 + eps)**(power/2); 1.0: enc itself
    norm_gain: Any  # (N,) cLN of the encoder output
    norm_bias: Any  # (N,)
    bn_w: Any  # (B, N) bottleneck
    bn_b: Any  # (B,)
    in_w: Any  # (nb, H, B) each block's input 1x1 conv
    in_b: Any  # (nb, H)
    alpha: Any  # (nb, 2) PReLU slopes: after the input conv, after the depthwise conv
    gain: Any  # (nb, 2, H) cLN gains: after the input conv, after the depthwise conv
    bias: Any  # (nb, 2, H) cLN biases
    dw: Any  # (nb, P, H) depthwise taps, oldest first
    db: Any  # (nb, H)
    dil: Any  # (nb,) int64 dilations (numpy, also for torch)
    res_w: Any  # (nb - 1, B, H) residual 1x1 convs (the last block has none)
    res_b: Any  # (nb - 1, B)
    skip_w: Any  # (nb, B, H) skip 1x1 convs
    skip_b: Any  # (nb, B)
    mask_alpha: float  # PReLU slope before the mask conv
    mask_w: Any  # (N, B) this source's mask conv
    mask_b: Any  # (N,)
    sigmoid: bool  # sigmoid mask, else ReLU
    dec: Any  # (L, N) decoder bases (transposed conv weight)
    dec_b: Any  # (L,) zeros: the decoder has no bias
    ctx: Any  # (2K, W) context DFT bases (cosines, then sines); (0, W) without a context branch
    ctx_b: Any  # (2K,) zeros
    ctx_gain: Any  # (K,) cLN of the context magnitudes
    ctx_bias: Any  # (K,)
    ctx_w: Any  # (B, K) context projection into the bottleneck
    ctx_pb: Any  # (B,)


class NetState(NamedTuple):
    """The network's carried state (on the engine's device)."""

    neff: Any  # (1,) float64 (decayed) frames so far
    cln: Any  # (1 + 2*nb [+ 1], C, 2) float64 running sum and sum of squares of each cLN (the context's last)
    hist: Any  # (nb, C, maxpad, H) float32 each depthwise conv's last (P-1)*dil inputs, a ring in its first rows
    pos: Any  # (1,) int64 frames so far (indexes the rings)
    decay: float  # cLN forgetting factor per frame (1.0: exact cLN)


class Scratch(NamedTuple):
    """Work buffers for up to ``rows = C * frames`` rows (on the engine's device)."""

    neff: Any  # (frames,) float64 frame count at each new frame
    enc: Any  # (rows, N) encoder output (kept for the mask)
    m: Any  # (rows, N) normalised encoder output, then the mask
    x: Any  # (rows, B) residual stream
    skip: Any  # (rows, B) sum of the skip outputs
    y: Any  # (rows, H) in a block, after the input conv
    z: Any  # (rows, H) in a block, after the depthwise conv
    re_im: Any  # (rows, 2K) context DFT
    mag: Any  # (rows, K) context magnitudes


class Framing(NamedTuple):
    """Host-side stream state around the network (numpy, both engines)."""

    pend: Any  # (C, W) float32 input not yet framed (starts as W - S zeros: the left pad); W = cfg.window
    tail: Any  # (C, S) float32 second half of the last decoded frame (overlap-add)
    fifo: Any  # (C, latency) float32 output computed but not yet returned
    dry: Any  # (C, latency) float32 the last input samples (the dry path's delay line)
    count: Any  # (3,) int64: samples in pend, output samples still to drop, samples in fifo
    frames: Any  # (rows, L) float32 encoder frames of the current chunk
    ctx: Any  # (rows, W) float32 their context windows (same ends); (0, W) without a context branch
    dec: Any  # (rows, L) float32 their decoded frames


def forward(ops, w, s, b, frames, ctx, dec, C, F):
    """The network over ``F`` new frames of ``C`` streams: ``frames (C*F, L)`` -> ``dec (C*F, L)``.

    ``ctx (C*F, W)``: the frames' context windows (read only if the model has a context branch).

    ``ops``: the operations (:data:`NUMBA_LAYER_OPS` or the torch engine's),
    ``w`` :class:`StreamWeights`, ``s`` :class:`NetState` (advanced by ``F``
    frames), ``b`` :class:`Scratch`.
    """
    M = C * F
    neff = b.neff[:F]
    ops.frame_counts(s.neff, s.decay, neff)
    enc, m, x, skip, y, z = b.enc[:M], b.m[:M], b.x[:M], b.skip[:M], b.y[:M], b.z[:M]
    ops.dense(frames, w.enc, w.enc_b, 0.0, enc, False)  # encoder, ReLU
    if w.feature_power != 1.0:  # compressed features for the separator; the mask still acts on enc
        ops.compress(enc, m, w.feature_power)
        ops.cln(m, m, w.norm_gain, w.norm_bias, s.cln[0], neff, s.decay, C, F)
    else:
        ops.cln(enc, m, w.norm_gain, w.norm_bias, s.cln[0], neff, s.decay, C, F)
    ops.dense(m, w.bn_w, w.bn_b, 1.0, x, False)  # bottleneck
    nb = w.skip_w.shape[0]
    if w.ctx.shape[0] > 0:  # context: |DFT|**power, cLN, projected into the bottleneck output
        re_im, mag = b.re_im[:M], b.mag[:M]
        ops.dense(ctx, w.ctx, w.ctx_b, 1.0, re_im, False)
        ops.magnitude(re_im, mag)
        ops.cln(mag, mag, w.ctx_gain, w.ctx_bias, s.cln[1 + 2 * nb], neff, s.decay, C, F)
        ops.dense(mag, w.ctx_w, w.ctx_pb, 1.0, x, True)
    for i in range(nb):
        ops.dense(x, w.in_w[i], w.in_b[i], w.alpha[i, 0], y, False)  # 1x1 conv, PReLU
        ops.cln(y, y, w.gain[i, 0], w.bias[i, 0], s.cln[1 + 2 * i], neff, s.decay, C, F)
        ops.depthwise(y, w.dw[i], w.db[i], w.alpha[i, 1], s.hist[i], w.dil[i], s.pos, C, F, z)  # and PReLU
        ops.cln(z, z, w.gain[i, 1], w.bias[i, 1], s.cln[2 + 2 * i], neff, s.decay, C, F)
        ops.dense(z, w.skip_w[i], w.skip_b[i], 1.0, skip, i > 0)  # the first skip starts the sum
        if i < nb - 1:
            ops.dense(z, w.res_w[i], w.res_b[i], 1.0, x, True)  # residual
    ops.prelu(skip, w.mask_alpha)
    ops.dense(skip, w.mask_w, w.mask_b, 1.0, m, False)
    ops.apply_mask(m, enc, w.sigmoid)
    ops.dense(m, w.dec, w.dec_b, 1.0, dec, False)  # decoder: each frame's L samples
    s.pos[0] += F


def stream_block(ops, x, out, w, s, b, io, dry_mix):
    """One block ``x (C, n)`` -> ``out (C, n)``: frames, network, overlap-add, dry mix.

    ``io`` :class:`Framing`; the rest as in :func:`forward`.  Long blocks run
    in chunks of at most ``io.frames.shape[0] // C`` frames.
    """
    n = x.shape[1]
    C = x.shape[0]
    done = ops.emit_fifo(io, out)
    pos = 0
    while pos < n:
        F, pos = ops.take_frames(x, pos, io)
        if F > 0:
            ops.network(w, s, b, io.frames[: C * F], io.ctx[: C * F], io.dec[: C * F], C, F)
            done = ops.overlap_add(io, C, F, out, done)
    ops.mix_dry(x, out, io, dry_mix)


# -- the network's kernels (numba) -------------------------------------------


@njit(cache=True, inline="always")
def _store(out, r, n, v, slope, add):
    if add:
        out[r, n] += v
    elif v < 0:
        out[r, n] = v * slope
    else:
        out[r, n] = v


@njit(cache=True, fastmath=FAST, inline="always")
def _tile1x4(x, w, b, slope, out, add, r, n):
    """Row ``r`` by outputs ``n...n+3`` (those there are) of :func:`dense`."""
    K = x.shape[1]
    N = w.shape[0]
    x0 = x[r]
    w0, w1, w2, w3 = w[n], w[min(n + 1, N - 1)], w[min(n + 2, N - 1)], w[min(n + 3, N - 1)]
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for k in range(K):
        a0 += x0[k] * w0[k]
        a1 += x0[k] * w1[k]
        a2 += x0[k] * w2[k]
        a3 += x0[k] * w3[k]
    for j, va in enumerate((a0, a1, a2, a3)):
        if n + j < N:
            _store(out, r, n + j, va + b[n + j], slope, add)


@njit(cache=True, fastmath=FAST, inline="always")
def _tile2x4(x, w, b, slope, out, add, r, n):
    """Rows ``r, r+1`` by outputs ``n...n+3`` (those there are) of :func:`dense`."""
    K = x.shape[1]
    N = w.shape[0]
    x0, x1 = x[r], x[r + 1]
    w0, w1, w2, w3 = w[n], w[min(n + 1, N - 1)], w[min(n + 2, N - 1)], w[min(n + 3, N - 1)]
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
    for k in range(K):
        a0 += x0[k] * w0[k]
        a1 += x0[k] * w1[k]
        a2 += x0[k] * w2[k]
        a3 += x0[k] * w3[k]
        b0 += x1[k] * w0[k]
        b1 += x1[k] * w1[k]
        b2 += x1[k] * w2[k]
        b3 += x1[k] * w3[k]
    for j, (va, vb) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3))):
        if n + j < N:
            _store(out, r, n + j, va + b[n + j], slope, add)
            _store(out, r + 1, n + j, vb + b[n + j], slope, add)


@njit(cache=True, fastmath=FAST, inline="always")
def _tile4x4(x, w, b, slope, out, add, r, n):
    """Rows ``r...r+3`` by outputs ``n...n+3`` (those there are) of :func:`dense`."""
    K = x.shape[1]
    N = w.shape[0]
    x0, x1, x2, x3 = x[r], x[r + 1], x[r + 2], x[r + 3]
    w0, w1, w2, w3 = w[n], w[min(n + 1, N - 1)], w[min(n + 2, N - 1)], w[min(n + 3, N - 1)]
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
    c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = np.float32(0.0)
    for k in range(K):
        a0 += x0[k] * w0[k]
        a1 += x0[k] * w1[k]
        a2 += x0[k] * w2[k]
        a3 += x0[k] * w3[k]
        b0 += x1[k] * w0[k]
        b1 += x1[k] * w1[k]
        b2 += x1[k] * w2[k]
        b3 += x1[k] * w3[k]
        c0 += x2[k] * w0[k]
        c1 += x2[k] * w1[k]
        c2 += x2[k] * w2[k]
        c3 += x2[k] * w3[k]
        d0 += x3[k] * w0[k]
        d1 += x3[k] * w1[k]
        d2 += x3[k] * w2[k]
        d3 += x3[k] * w3[k]
    for j, (va, vb, vc, vd) in enumerate(((a0, b0, c0, d0), (a1, b1, c1, d1), (a2, b2, c2, d2), (a3, b3, c3, d3))):
        if n + j < N:
            _store(out, r, n + j, va + b[n + j], slope, add)
            _store(out, r + 1, n + j, vb + b[n + j], slope, add)
            _store(out, r + 2, n + j, vc + b[n + j], slope, add)
            _store(out, r + 3, n + j, vd + b[n + j], slope, add)


# one signature: no copies for literal or float64 slopes and flags (each costs seconds of compiling)
@njit("void(f4[:, ::1], f4[:, ::1], f4[::1], f4, f4[:, ::1], b1)", cache=True, fastmath=FAST)
def dense(x, w, b, slope, out, add):
    """``out = prelu(x @ w.T + b, slope)``, or ``out += x @ w.T + b`` when ``add``.

    ``x (M, K)``, ``w (N, K)``, ``b (N,)``, ``out (M, N)``; ``slope`` 0 is a
    ReLU, 1 no activation.  Tiles of 4 rows (then 2, then 1; 2 then 1 unless
    :data:`WIDE_TILES`) by 4 outputs: each element of ``x`` and ``w`` loaded
    serves several of the tile's dot products.  The last tile of a row repeats its last output and stores it once.
    """
    M = x.shape[0]
    N = w.shape[0]
    if not WIDE_TILES:
        # 2-row tiles, all rows per 4 weight rows: those stay in L1 while every row uses them
        for n in range(0, N, 4):
            r = 0
            while M - r >= 2:
                _tile2x4(x, w, b, slope, out, add, r, n)
                r += 2
            if M - r == 1:
                _tile1x4(x, w, b, slope, out, add, r, n)
        return
    r = 0
    while M - r >= 4:
        for n in range(0, N, 4):
            _tile4x4(x, w, b, slope, out, add, r, n)
        r += 4
    if M - r >= 2:
        for n in range(0, N, 4):
            _tile2x4(x, w, b, slope, out, add, r, n)
        r += 2
    if M - r == 1:
        for n in range(0, N, 4):
            _tile1x4(x, w, b, slope, out, add, r, n)


@njit(cache=True)
def frame_counts(state, decay, neff):
    """The (decayed) frame count at each of ``len(neff)`` new frames; advances ``state (1,)``."""
    c = state[0]
    for f in range(neff.shape[0]):
        c = decay * c + 1.0
        neff[f] = c
    state[0] = c


@njit(cache=True, fastmath=FAST)
def cln(x, out, gain, bias, sums, neff, decay, C, F):
    """Cumulative layer norm of ``x (C*F, ch)`` into ``out`` (may be ``x``).

    ``sums (C, 2)`` float64 carries each stream's running sum and sum of
    squares (decayed by ``decay`` per frame); ``neff (F,)`` is the frame count
    at each new frame (:func:`frame_counts`).
    """
    ch = x.shape[1]
    for c in range(C):
        s1 = sums[c, 0]
        s2 = sums[c, 1]
        for f in range(F):
            r = c * F + f
            a1 = 0.0
            a2 = 0.0
            for k in range(ch):
                v = np.float64(x[r, k])
                a1 += v
                a2 += v * v
            s1 = decay * s1 + a1
            s2 = decay * s2 + a2
            count = neff[f] * ch
            mean = s1 / count
            var = max(s2 / count - mean * mean, 0.0)
            m32 = np.float32(mean)
            k32 = np.float32(1.0 / np.sqrt(var + CLN_EPS))
            for k in range(ch):
                out[r, k] = (x[r, k] - m32) * k32 * gain[k] + bias[k]
        sums[c, 0] = s1
        sums[c, 1] = s2


@njit(cache=True, fastmath=FAST)
def depthwise(y, w, b, slope, hist, dil, pos, C, F, out):
    """Causal dilated depthwise conv and PReLU of ``y (C*F, H)`` into ``out``.

    ``w (P, H)`` taps oldest first.  ``hist (C, maxpad, H)``: its first
    ``pad = (P-1)*dil`` rows are a ring of the last ``pad`` inputs, stream
    frame ``k`` at row ``k % pad`` (zeros before the first); ``pos (1,)`` is
    the frames before these ``F``.  The new inputs are written in: a block
    writes ``F`` rows instead of shifting all ``pad``.
    """
    P, H = w.shape
    pad = (P - 1) * dil
    now = pos[0] % pad if pad else 0  # the ring row of the first new frame
    for c in range(C):
        for f in range(F):
            r = c * F + f
            for h in range(H):
                out[r, h] = b[h]
            for p in range(P):
                t = f + p * dil - pad  # input frame, relative to the first new one
                if t < 0:
                    row = now + t if now + t >= 0 else now + t + pad
                    for h in range(H):
                        out[r, h] += w[p, h] * hist[c, row, h]
                else:
                    for h in range(H):
                        out[r, h] += w[p, h] * y[c * F + t, h]
            for h in range(H):
                if out[r, h] < 0:
                    out[r, h] *= slope
        if pad == 0:
            continue
        first = max(F - pad, 0)  # new frames before it would be overwritten in this same block
        row = (now + first) % pad
        for f in range(first, F):  # after the reads: a row may hold an input still read above
            for h in range(H):
                hist[c, row, h] = y[c * F + f, h]
            row = row + 1 if row + 1 < pad else 0


@njit(cache=True, fastmath=FAST)
def prelu(x, a):
    """In-place PReLU of ``x (M, ch)`` with one slope ``a``."""
    M, ch = x.shape
    for r in range(M):
        for k in range(ch):
            if x[r, k] < 0:
                x[r, k] *= a


@njit(cache=True, fastmath=FAST)
def magnitude(re_im, out):
    """``out (M, K) = (re**2 + im**2 + eps)**(power/2)`` of ``re_im (M, 2K)`` (real parts, then imaginary)."""
    M, K = out.shape
    half = np.float32(CTX_POWER / 2)
    for r in range(M):
        for k in range(K):
            re = re_im[r, k]
            im = re_im[r, K + k]
            out[r, k] = (re * re + im * im + np.float32(CTX_EPS)) ** half


@njit(cache=True, fastmath=FAST)
def compress(x, out, power):
    """``out (M, ch) = (x**2 + eps)**(power/2)`` of ``x (M, ch)``."""
    M, ch = x.shape
    half = np.float32(power / 2)
    for r in range(M):
        for k in range(ch):
            out[r, k] = (x[r, k] * x[r, k] + np.float32(CTX_EPS)) ** half


@njit(cache=True, fastmath=FAST)
def apply_mask(m, enc, sigmoid):
    """``m = act(m) * enc`` in place; ``act`` sigmoid or ReLU."""
    M, ch = m.shape
    for r in range(M):
        for k in range(ch):
            v = m[r, k]
            if sigmoid:
                v = np.float32(1.0) / (np.float32(1.0) + np.exp(-v))
            elif v < 0:
                v = np.float32(0.0)
            m[r, k] = v * enc[r, k]


class LayerOps(NamedTuple):
    """The operations :func:`forward` calls (numba kernels or torch functions of the same signatures)."""

    frame_counts: Any
    dense: Any
    cln: Any
    depthwise: Any
    prelu: Any
    apply_mask: Any
    magnitude: Any
    compress: Any


NUMBA_LAYER_OPS = LayerOps(frame_counts, dense, cln, depthwise, prelu, apply_mask, magnitude, compress)
_forward_numba = njit(cache=True, inline="always")(forward)  # inlined: the ops become direct calls


@njit(cache=True)
def network(w, s, b, frames, ctx, dec, C, F):
    """:func:`forward` with the numba kernels."""
    _forward_numba(NUMBA_LAYER_OPS, w, s, b, frames, ctx, dec, C, F)


# -- framing, overlap-add and the dry path (numba, both engines) --------------


@njit(cache=True)
def emit_fifo(io, out):
    """Start the output ``out (C, n)`` with the samples held back; returns how many."""
    C, n = out.shape
    held = io.count[2]
    k = min(held, n)
    for c in range(C):
        for j in range(k):
            out[c, j] = io.fifo[c, j]
        for j in range(held - k):
            io.fifo[c, j] = io.fifo[c, k + j]
    io.count[2] = held - k
    return k


@njit(cache=True)
def take_frames(x, pos, io):
    """Cut encoder frames (and their context windows) from ``io.pend`` followed by ``x[:, pos:]``.

    Takes as many whole frames as there are (up to the buffer's capacity)
    into ``io.frames`` (and ``io.ctx``), keeps what the next frame needs in
    ``io.pend``; returns ``(frames taken, new pos)``.
    """
    C, n = x.shape
    W = io.pend.shape[1]
    L = io.frames.shape[1]
    S = io.tail.shape[1]
    held = io.count[0]
    avail = (held - (W - S) + n - pos) // S
    F = min(avail, io.frames.shape[0] // C)
    left = held + n - pos - F * S  # samples after the frames taken
    if F < avail:
        left = W - S  # the buffer is full: stop where the next frame starts
    context = io.ctx.shape[0] > 0
    for c in range(C):
        for f in range(F):
            r = c * F + f
            for j in range(L):  # a frame is the last L samples of its window
                t = f * S + W - L + j
                io.frames[r, j] = io.pend[c, t] if t < held else x[c, pos + t - held]
            if context:
                for j in range(W):
                    t = f * S + j
                    io.ctx[r, j] = io.pend[c, t] if t < held else x[c, pos + t - held]
        for j in range(left):  # in place: the source index is never below j
            t = F * S + j
            io.pend[c, j] = io.pend[c, t] if t < held else x[c, pos + t - held]
    io.count[0] = left
    return F, pos + max(F * S + left - held, 0)


@njit(cache=True)
def overlap_add(io, C, F, out, done):
    """Overlap-add ``io.dec``'s ``F`` frames per stream; completed samples go to ``out`` after ``done``, then to the fifo.

    Each frame's first half completes the previous frame's second half
    (``io.tail``); the first ``S`` samples of a stream lie in the left pad
    and are dropped.  Returns the new ``done``.
    """
    n = out.shape[1]
    S = io.tail.shape[1]
    drop0 = io.count[1]
    held0 = io.count[2]
    w = done
    for c in range(C):
        drop = drop0
        held = held0
        w = done
        for f in range(F):
            r = c * F + f
            for j in range(S):
                v = io.dec[r, j] + io.tail[c, j]
                io.tail[c, j] = io.dec[r, S + j]
                if drop > 0:
                    drop -= 1
                elif w < n:
                    out[c, w] = v
                    w += 1
                else:
                    io.fifo[c, held] = v
                    held += 1
        io.count[1] = drop
        io.count[2] = held
    return w


@njit(cache=True)
def mix_dry(x, out, io, dry_mix):
    """``out = (1 - dry_mix) * out + dry_mix * x`` delayed by the latency (``io.dry``'s length)."""
    if dry_mix == 0.0:
        return
    C, n = x.shape
    lat = io.dry.shape[1]
    wet = np.float32(1.0 - dry_mix)
    dry = np.float32(dry_mix)
    for c in range(C):
        for t in range(n):
            v = io.dry[c, t] if t < lat else x[c, t - lat]
            out[c, t] = wet * out[c, t] + dry * v
        for k in range(lat):  # in place: the source index is above k
            t = n + k
            io.dry[c, k] = io.dry[c, t] if t < lat else x[c, t - lat]


class BlockOps(NamedTuple):
    """The operations :func:`stream_block` calls; only ``network`` differs between engines."""

    emit_fifo: Any
    take_frames: Any
    network: Any
    overlap_add: Any
    mix_dry: Any


NUMBA_BLOCK_OPS = BlockOps(emit_fifo, take_frames, network, overlap_add, mix_dry)
_stream_block_numba = njit(cache=True, inline="always")(stream_block)


@structref.register
class StreamType(types.StructRef):
    """numba's type of a :class:`Stream`."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class Stream(structref.StructRefProxy):
    """One numba stream's records ``w, s, b, io`` and its ``dry_mix``, held as one native object.

    A compiled call unboxes it in one step, where the records' ~50 arrays
    cost ~2 us per call (~45 ns each).  The arrays are the records' own.
    """

    def __new__(cls, w, s, b, io, dry_mix):
        return _new_stream(w, s, b, io, dry_mix)


structref.define_proxy(Stream, StreamType, ["w", "s", "b", "io", "dry_mix"])


@njit(cache=True)
def _new_stream(w, s, b, io, dry_mix):
    return Stream(w, s, b, io, dry_mix)  # compiled here to be cached (the proxy's own constructor is not)


@njit(cache=True)
def process_block(x, out, st):
    """:func:`stream_block` compiled with the numba kernels for the :class:`Stream` ``st``: one call per block (CPU)."""
    _stream_block_numba(NUMBA_BLOCK_OPS, x, out, st.w, st.s, st.b, st.io, st.dry_mix)
