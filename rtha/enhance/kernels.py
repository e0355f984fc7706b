"""The streaming step of the causal Conv-TasNet as one numba function (CPU).

One call advances every layer by ``F`` new frames for ``batch`` independent
streams.  Features are time-major ``(batch * F, channels)`` (row ``b*F + f``)
so each 1x1 conv is one BLAS matmul (``np.dot``) over all new frames; cLN,
PReLU and the dilated depthwise convs are plain loops compiled with the rest,
so a block costs a handful of BLAS calls and no Python per layer.

The weights come from :func:`rtha.enhance.streaming.export_weights`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .config import CLN_EPS


@njit(cache=True, fastmath=True)
def _prelu(x, a):
    R, C = x.shape
    for r in range(R):
        for c in range(C):
            if x[r, c] < 0:
                x[r, c] *= a


@njit(cache=True, fastmath=True)
def _cln(x, batch, F, neff, decay, state, gain, bias):
    """In-place cumulative layer norm of ``x (batch*F, C)``.

    ``state (batch, 2)`` float64 carries the running sum and sum of squares;
    ``neff (F,)`` is the (decayed) frame count at each new frame.
    """
    C = x.shape[1]
    for b in range(batch):
        s1 = state[b, 0]
        s2 = state[b, 1]
        for f in range(F):
            r = b * F + f
            a1 = 0.0
            a2 = 0.0
            for c in range(C):
                v = np.float64(x[r, c])
                a1 += v
                a2 += v * v
            s1 = decay * s1 + a1
            s2 = decay * s2 + a2
            count = neff[f] * C
            mean = s1 / count
            var = s2 / count - mean * mean
            if var < 0.0:
                var = 0.0
            m32 = np.float32(mean)
            k32 = np.float32(1.0 / np.sqrt(var + CLN_EPS))
            for c in range(C):
                x[r, c] = (x[r, c] - m32) * k32 * gain[c] + bias[c]
        state[b, 0] = s1
        state[b, 1] = s2


@njit(cache=True, fastmath=True)
def _depthwise(y, batch, F, hist, dil, P, w, bias):
    """Causal dilated depthwise conv of ``y (batch*F, H)`` with history ``hist (batch, maxpad, H)``.

    Returns the conv output and shifts the newest ``(P-1)*dil`` input frames
    into the history.
    """
    H = y.shape[1]
    maxpad = hist.shape[1]
    pad = (P - 1) * dil
    z = np.empty_like(y)
    for b in range(batch):
        for f in range(F):
            r = b * F + f
            for h in range(H):
                z[r, h] = bias[h]
            for p in range(P):
                t = f + p * dil - pad
                if t < 0:
                    for h in range(H):
                        z[r, h] += w[p, h] * hist[b, maxpad + t, h]
                else:
                    for h in range(H):
                        z[r, h] += w[p, h] * y[b * F + t, h]
        if pad == 0:
            continue
        if F >= pad:
            for k in range(pad):
                for h in range(H):
                    hist[b, maxpad - pad + k, h] = y[b * F + F - pad + k, h]
        else:
            for k in range(maxpad - pad, maxpad - F):
                for h in range(H):
                    hist[b, k, h] = hist[b, k + F, h]
            for k in range(F):
                for h in range(H):
                    hist[b, maxpad - F + k, h] = y[b * F + k, h]
    return z


@njit(cache=True)
def stream_step(
    frames,  # (batch, F, L) float32 encoder input frames
    enc,  # (L, N)
    norm_gain,  # (N,)
    norm_bias,  # (N,)
    bn_w,  # (N, B)
    bn_b,  # (B,)
    in_w,  # (nb, B, H)
    in_b,  # (nb, H)
    alpha,  # (nb, 2) PReLU slopes
    gain,  # (nb, 2, H) cLN gains
    bias,  # (nb, 2, H) cLN biases
    dw,  # (nb, P, H) depthwise taps
    db,  # (nb, H)
    dil,  # (nb,) int64
    out_w,  # (nb-1, H, 2B) residual|skip
    out_b,  # (nb-1, 2B)
    last_w,  # (H, B) skip of the last block
    last_b,  # (B,)
    mask_alpha,  # float32
    mask_w,  # (B, N) this source's mask conv
    mask_b,  # (N,)
    sigmoid,  # bool: sigmoid mask, else ReLU
    dec,  # (N, L)
    decay,  # float64 cLN forgetting factor per frame (1.0 = exact cLN)
    neff_state,  # (1,) float64 (decayed) frames so far
    cln_state,  # (1 + 2*nb, batch, 2) float64
    hist,  # (nb, batch, maxpad, H) float32
):
    """Advance the model by ``F`` frames; returns decoded frames ``(batch, F, L)`` for overlap-add."""
    batch, F, L = frames.shape
    nb = in_w.shape[0]
    P = dw.shape[1]
    B = bn_w.shape[1]
    neff = np.empty(F, np.float64)
    n = neff_state[0]
    for f in range(F):
        n = decay * n + 1.0
        neff[f] = n
    neff_state[0] = n

    w = np.dot(frames.reshape(batch * F, L), enc)
    for r in range(w.shape[0]):
        for c in range(w.shape[1]):
            if w[r, c] < 0:
                w[r, c] = 0.0
    x = w.copy()
    _cln(x, batch, F, neff, decay, cln_state[0], norm_gain, norm_bias)
    x = np.dot(x, bn_w) + bn_b
    skip = np.zeros_like(x)
    for i in range(nb):
        y = np.dot(x, in_w[i]) + in_b[i]
        _prelu(y, alpha[i, 0])
        _cln(y, batch, F, neff, decay, cln_state[1 + 2 * i], gain[i, 0], bias[i, 0])
        z = _depthwise(y, batch, F, hist[i], dil[i], P, dw[i], db[i])
        _prelu(z, alpha[i, 1])
        _cln(z, batch, F, neff, decay, cln_state[2 + 2 * i], gain[i, 1], bias[i, 1])
        if i < nb - 1:
            o = np.dot(z, out_w[i]) + out_b[i]
            x += o[:, :B]
            skip += o[:, B:]
        else:
            skip += np.dot(z, last_w) + last_b
    _prelu(skip, mask_alpha)
    m = np.dot(skip, mask_w) + mask_b
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            if sigmoid:
                m[r, c] = 1.0 / (1.0 + np.exp(-m[r, c]))
            elif m[r, c] < 0:
                m[r, c] = 0.0
    return np.dot(w * m, dec).reshape(batch, F, L)
