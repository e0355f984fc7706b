"""The impaired cochlea of MSBG, streamed: gammatone bank, envelope, recruitment.

Per ear, as pyclarity 0.9.0's ``Cochlea.simulate`` after the smearing (Moore &
Glasberg 1993 recruitment):

1. Gammatone filterbank (:mod:`.tables`): channel ``c[n] = g[n + d]``, the
   causal filter output ``g`` advanced by the channel's group delay ``d``.
2. Envelope: ``|c|`` through a 2-pole elliptic low-pass (0.25 dB ripple,
   35 dB stop band, cut-off ``0.75 min(100, ERB(cf))`` Hz), forwards and then
   backwards (pyclarity: ``filtfilt``).
3. Recruitment: ``c * (env / env_max) ** (expansion - 1)`` with ``env``
   clipped to ``[1e-9, env_max]``, ``env_max`` = the digital level of the
   105 dB SPL catch-up level and ``expansion = 105 / (105 - HL(cf))``.
4. The channels are summed (the recombination gain is left to the caller).

Streaming needs look-ahead for the advance and for the backward pass. All
channels share one delay ``E`` (``latency``): the output at stream time ``t``
is the offline output at ``n = t - E``. Channel ``c[n] = g[t - (E - d)]``
comes from a ring buffer. The backward pass, an anti-causal IIR, is cut to
the ``L`` samples ``f[n .. n+L-1]`` of the forward-filtered envelope ``f``
and the rest is taken as ``f[n+L-1]`` held (what ``filtfilt`` assumes past a
file's end); with the low-pass's partial fractions
``h[k] = k0 [k = 0] + 2 Re(r p^k)``:

    env[n] = k0 f[n] + 2 Re(r S[n]) + G f[n+L-1],
    S[n] = sum_{k<L} p^k f[n+k],   G = sum_{k>=L} h[k] = 2 Re(r p^L / (1 - p)).

``S`` is a sliding window sum, updated per sample as a truncated IIR
(Wang & Smith): ``S <- (S - f_out) / p + p^(L-1) f_in``. Dividing by ``p``
amplifies rounding, so two copies alternate, each restarted from 0 every
``2L`` samples and read only while it is between ``L - 1`` and ``2L - 1``
samples old (growth at most ``|p|^(-2L)``, kept below ``e^16`` by capping
``L`` at 8 time constants of the low-pass). ``L`` per channel is the longest
the shared delay allows, ``E + 1 - d``, up to that cap; the lowest channel
(largest ``d``, slowest envelope) gets the shortest, the ``lookahead``
given to :class:`CochleaBank`.

Everything runs in one numba kernel per block, channel by channel (time
inner), in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import signal

from .tables import CATCH_UP_DB, FS, GammatoneBank

ENV_FLOOR = 1e-9  # pyclarity's lower clip of the envelope
_GROWTH_TAU = 8.0  # window cap, in time constants of the envelope low-pass


def envelope_lowpass(erb_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The envelope low-pass of a channel: ``(b, a)`` of a 2-pole elliptic filter."""
    fc = 0.75 * min(100.0, erb_hz)
    return signal.ellip(2, 0.25, 35, fc / (FS / 2))


_LN2 = 0.6931471805599453
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: adding and subtracting it rounds to an integer
_MANTISSA = 0x000FFFFFFFFFFFFF
_EXP_ONE = 0x3FF0000000000000
_ATANH = tuple(1.0 / k for k in (15, 13, 11, 9, 7, 5, 3, 1))  # (atanh s) / s in s**2, highest power first
_EXP = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))  # Taylor coefficients of exp, highest first


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _pow_inplace(u, a, bits, scratch):
    """``u[i] <- u[i] ** a`` for normal ``u[i] > 0``, to a few ulp (relative error below 1e-13).

    libm's ``pow`` cost as much as the rest of the cochlea; this one runs in
    SIMD lanes: ``ln u`` from the exponent and ``2 atanh`` of the mantissa
    (8 terms), ``exp`` by ``2**k`` times a Taylor polynomial (14 terms) on
    ``|r| <= ln(2)/2``. bits (int64) and scratch (float64) are work arrays
    as long as ``u``.
    """
    n = u.shape[0]
    ub = u.view(np.int64)
    for i in range(n):  # split u = m 2**e, m in [1, 2)
        b = ub[i]
        scratch[i] = np.float64((b >> 52) - 1023)
        bits[i] = (b & _MANTISSA) | _EXP_ONE
    mantissa = bits.view(np.float64)
    for i in range(n):
        m = mantissa[i]
        big = np.float64(m > 1.4142135623730951)  # m in [1/sqrt 2, sqrt 2): |s| <= 0.172
        m = m * (1.0 - 0.5 * big)
        s = (m - 1.0) / (m + 1.0)
        s2 = s * s
        p = 0.0
        for c in _ATANH:
            p = p * s2 + c
        y = a * (2.0 * s * p + (scratch[i] + big) * _LN2)
        y = min(max(y, -700.0), 700.0)
        k = (y * 1.4426950408889634 + _ROUND) - _ROUND
        r = (y - k * _LN2_HI) - k * _LN2_LO
        q = 0.0
        for c in _EXP:
            q = q * r + c
        u[i] = q
        scratch[i] = k
    for i in range(n):
        bits[i] = (np.int64(scratch[i]) + 1023) << 52
    scale = bits.view(np.float64)
    for i in range(n):
        u[i] *= scale[i]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _cochlea(
    x, out, ear, gt, hp, has_hp, env_ba, modes, lengths, advances, delays, expo, inv_env_max, env_max,
    gt_z, hp_z, env_z, acc, phase, ring_g, ring_f, t0,
):
    """Run every channel over one block, updating the state in place.

    x: (ears, n) float64 smeared input; out: (ears, n) float64, summed into.
    Per channel l: ear[l]; gt[l] = b0, b1, a1, a2; hp[l] = b0, a1, a2 (used
    when has_hp[l]); env_ba[l] = b0, b1, b2, a1, a2; modes[l] = (1/p,
    p^(L-1), 2r, k0, G) complex; lengths[l] = L; advances[l] = d;
    delays[l] = E - d; expo[l] = expansion - 1.
    State: gt_z (l, 4, 2), hp_z (l, 2), env_z (l, 2), acc (l, 2) complex,
    phase (l,) int64, rings (l, R) float64 with R a power of two; t0 = stream
    time of x[:, 0].
    """
    n_lanes = ear.shape[0]
    n = x.shape[1]
    mask = ring_g.shape[1] - 1
    chan = np.empty(n)  # one channel's delayed signal and, below, its recruitment gain
    gain = np.empty(n)
    bits = np.empty(n, np.int64)
    scratch = np.empty(n)
    for l in range(n_lanes):
        e = ear[l]
        b0, b1, a1, a2 = gt[l, 0], gt[l, 1], gt[l, 2], gt[l, 3]
        hb0, ha1, ha2 = hp[l, 0], hp[l, 1], hp[l, 2]
        use_hp = has_hp[l]
        eb0, eb1, eb2, ea1, ea2 = env_ba[l, 0], env_ba[l, 1], env_ba[l, 2], env_ba[l, 3], env_ba[l, 4]
        pinv, p_l1, r2, k0, hold = modes[l, 0], modes[l, 1], modes[l, 2], modes[l, 3].real, modes[l, 4].real
        L = lengths[l]
        d = advances[l]
        dg = delays[l]
        skip = delays[l] + 1 - L  # the window ends this many samples before the newest f
        ex = expo[l]
        z = gt_z[l]
        hz1, hz2 = hp_z[l, 0], hp_z[l, 1]
        ez1, ez2 = env_z[l, 0], env_z[l, 1]
        acc_a, acc_b = acc[l, 0], acc[l, 1]
        ph = phase[l]
        rg = ring_g[l]
        rf = ring_f[l]
        for i in range(n):
            t = t0 + i
            # Gammatone: four identical stages, transposed direct form II (b2 = 0).
            v = x[e, i]
            for s in range(4):
                y = b0 * v + z[s, 0]
                z[s, 0] = b1 * v - a1 * y + z[s, 1]
                z[s, 1] = -a2 * y
                v = y
            if use_hp:
                y = hb0 * v + hz1
                hz1 = -2.0 * hb0 * v - ha1 * y + hz2
                hz2 = hb0 * v - ha2 * y
                v = y
            if t < d:
                v = 0.0  # c[n] = g[n + d]: the first d samples of g precede the channel's start
            rg[t & mask] = v
            # Forward envelope pass.
            a = abs(v)
            y = eb0 * a + ez1
            ez1 = eb1 * a - ea1 * y + ez2
            ez2 = eb2 * a - ea2 * y
            rf[t & mask] = y
            # Backward pass over the window f[n .. n+L-1] (stream times t-skip-L+1 .. t-skip).
            f_in = rf[(t - skip) & mask]
            f_out = rf[(t - skip - L) & mask] * pinv
            if ph == 0:
                acc_a = 0.0
            elif ph == L:
                acc_b = 0.0
            acc_a = acc_a * pinv + p_l1 * f_in
            acc_b = acc_b * pinv + p_l1 * f_in
            if ph >= L:
                acc_a -= f_out
            else:
                acc_b -= f_out
            w = acc_a if L - 1 <= ph < 2 * L - 1 else acc_b
            ph += 1
            if ph == 2 * L:
                ph = 0
            env = k0 * rf[(t - skip - L + 1) & mask] + (r2 * w).real + hold * f_in
            gain[i] = min(max(env, ENV_FLOOR), env_max) * inv_env_max
            chan[i] = rg[(t - dg) & mask]  # the channel, delayed to line up with its envelope
        # Recruitment: the channel times (env / env_max) ** (expansion - 1).
        _pow_inplace(gain, ex, bits, scratch)
        for i in range(n):
            out[e, i] += chan[i] * gain[i]
        hp_z[l, 0], hp_z[l, 1] = hz1, hz2
        env_z[l, 0], env_z[l, 1] = ez1, ez2
        acc[l, 0], acc[l, 1] = acc_a, acc_b
        phase[l] = ph


class CochleaBank:
    """Gammatone analysis, envelope, recruitment and recombination for each ear.

    Args:
        banks: one :class:`~.tables.GammatoneBank` per ear.
        expansions: recruitment expansion ratio per channel, one array per ear.
        level_db_spl: dB SPL of a digital RMS of 1 (pyclarity's ``equiv_0db_spl``).
        lookahead: shortest backward-envelope window, in samples (the lowest channel's).

    ``process(x)`` takes ``(ears, n)`` float64 and returns ``(ears, n)`` float64,
    each ear's channel sum (before the recombination gain), delayed by
    ``latency`` samples: ``max(d) + lookahead - 1`` over both ears' banks.
    """

    def __init__(self, banks: list[GammatoneBank], expansions: list[np.ndarray], level_db_spl: float, lookahead: int) -> None:
        self.n_ears = len(banks)
        self.latency = int(max(b.advances.max() for b in banks)) + int(lookahead) - 1
        E = self.latency
        lanes = []
        for e, (bank, ex) in enumerate(zip(banks, expansions)):
            for ch, (_, b0, b1, a1, a2, d) in enumerate(bank.channels):
                eb, ea = envelope_lowpass(bank.erb[ch])
                r, p, k = signal.residuez(eb, ea)
                if np.isreal(p[0]) or not np.isclose(p[0], np.conj(p[1])):
                    raise AssertionError("the envelope low-pass is expected to have a complex pole pair")
                p, r = p[0], r[0]
                tau = -1.0 / np.log(abs(p))
                L = int(min(E + 1 - d, _GROWTH_TAU * tau))
                hold = 2.0 * (r * p**L / (1.0 - p)).real
                j = ch - bank.first_highpass
                hp = bank.highpass[j] if j >= 0 else (0.0, 0.0, 0.0)
                lanes.append(dict(
                    ear=e, gt=(b0, b1, a1, a2), hp=hp, has_hp=j >= 0, env=(eb[0], eb[1], eb[2], ea[1], ea[2]),
                    modes=(1.0 / p, p ** (L - 1), 2.0 * r, k[0], hold), L=L, d=d, expo=ex[ch] - 1.0,
                ))
        self._ear = np.array([c["ear"] for c in lanes], np.int64)
        self._gt = np.array([c["gt"] for c in lanes])
        self._hp = np.array([c["hp"] for c in lanes])
        self._has_hp = np.array([c["has_hp"] for c in lanes])
        self._env = np.array([c["env"] for c in lanes])
        self._modes = np.array([c["modes"] for c in lanes], np.complex128)
        self._lengths = np.array([c["L"] for c in lanes], np.int64)
        self._advances = np.array([c["d"] for c in lanes], np.int64)
        self._delays = E - self._advances
        self._expo = np.array([c["expo"] for c in lanes])
        # pyclarity: env_max = 10 ** ((105 - (equiv_0db_spl + ahr)) / 20), ahr folded into level_db_spl by the caller
        self.env_max = 10.0 ** ((CATCH_UP_DB - level_db_spl) / 20.0)
        self._ring_size = 1 << int(np.ceil(np.log2(E + 2)))
        self.reset()

    def reset(self) -> None:
        n = len(self._ear)
        self._gt_z = np.zeros((n, 4, 2))
        self._hp_z = np.zeros((n, 2))
        self._env_z = np.zeros((n, 2))
        self._acc = np.zeros((n, 2), np.complex128)
        self._phase = np.zeros(n, np.int64)
        self._ring_g = np.zeros((n, self._ring_size))
        self._ring_f = np.zeros((n, self._ring_size))
        self._t = 0

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """``x (ears, n)`` float64 smeared input -> ``out (ears, n)`` float64, what each ear hears."""
        out[:] = 0.0
        _cochlea(
            x, out, self._ear, self._gt, self._hp, self._has_hp, self._env, self._modes, self._lengths,
            self._advances, self._delays, self._expo, 1.0 / self.env_max, self.env_max,
            self._gt_z, self._hp_z, self._env_z, self._acc, self._phase, self._ring_g, self._ring_f, self._t,
        )
        self._t += x.shape[1]
