"""Fast Gaussian draws from the stream of ``numpy.random.RandomState.standard_normal``.

The ear models add low-level Gaussian noise, and the reference toolkit
(pyclarity) draws it from numpy's legacy stream: MT19937 and the polar
(Marsaglia) method, which turns each accepted pair of uniforms (x1, x2) with
r2 = x1^2 + x2^2 < 1 into two normals, f*x2 then f*x1 (cached) with
f = sqrt(-2 log(r2) / r2).  Matching the reference to 1e-6 needs the very same
draws, but the legacy generator takes ~15-50 ns a value and an ear model needs
~10 million of them.

Here the state is taken from the ``RandomState``, the 624-word MT19937 blocks
are generated and screened for accepted pairs in vectorised numba loops, the
logarithms run as a numpy ufunc, and the advanced state is written back, so
``rng`` ends exactly where ``rng.standard_normal(shape)`` would leave it and
the values equal numpy's to the last bit or two (numpy's vectorised ``log``
may differ from the C library's by an ulp).  :func:`skip_standard_normal`
advances the stream without computing values at all (it only counts the
accepted pairs).  :class:`NormalStream` keeps a stream open across calls and
can fork it, to take draws far ahead before the ones in between.
"""

from __future__ import annotations

import copy
import math

import numpy as np
from numba import njit

_N, _M = 624, 397
_MATRIX_A, _UPPER, _LOWER = 0x9908B0DF, 0x80000000, 0x7FFFFFFF
# Dividing by 2**53 (as numpy does) equals this exact multiplication.
_TWO_POW_M53 = 1.0 / 9007199254740992.0
#: Accepted pairs per numba call (bounds the scratch memory).
_CHUNK_PAIRS = 1 << 15


@njit(cache=True, nogil=True)
def _twist(key):
    """Regenerate the 624 state words in place (three loops so that each vectorises)."""
    for i in range(_N - _M):
        y = (key[i] & _UPPER) | (key[i + 1] & _LOWER)
        key[i] = key[i + _M] ^ (y >> 1) ^ ((y & 1) * _MATRIX_A)
    for i in range(_N - _M, _N - 1):
        y = (key[i] & _UPPER) | (key[i + 1] & _LOWER)
        key[i] = key[i + _M - _N] ^ (y >> 1) ^ ((y & 1) * _MATRIX_A)
    y = (key[_N - 1] & _UPPER) | (key[0] & _LOWER)
    key[_N - 1] = key[_M - 1] ^ (y >> 1) ^ ((y & 1) * _MATRIX_A)


@njit(cache=True, nogil=True)
def _temper(key, words):
    for i in range(_N):
        y = key[i]
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        words[i] = y


@njit(cache=True, nogil=True)
def _uniform(a, b):
    """numpy's legacy double in [-1, 1) from two 32-bit words."""
    return 2.0 * (((a >> 5) * 67108864.0 + (b >> 6)) * _TWO_POW_M53) - 1.0


@njit(cache=True, nogil=True)
def _word(key, words, pos):
    if pos[0] >= _N:
        _twist(key)
        _temper(key, words)
        pos[0] = 0
    w = words[pos[0]]
    pos[0] += 1
    return w


@njit(cache=True, nogil=True)
def _accepted_count(words, p, m):
    """How many of the ``m`` attempts from word ``p`` on give an accepted pair."""
    total = 0
    for i in range(m):
        o = p + 4 * i
        u1 = _uniform(words[o], words[o + 1])
        u2 = _uniform(words[o + 2], words[o + 3])
        s = u1 * u1 + u2 * u2
        total += (s < 1.0) & (s != 0.0)
    return total


@njit(cache=True, nogil=True)
def _accepted_pairs(key, words, pos, npairs, x1, x2, r2, store):
    """Walk the stream to the next ``npairs`` accepted pairs.

    ``key`` (624,) int64 state, ``words`` its tempered output, ``pos`` [next
    word], all updated in place.  When ``store``, the pairs' x1, x2, r2 go to
    the first ``npairs`` elements of those arrays.
    """
    ax1 = np.empty(_N // 4)
    ax2 = np.empty(_N // 4)
    ar2 = np.empty(_N // 4)
    ok = np.empty(_N // 4, np.int64)
    found = 0
    while found < npairs:
        if pos[0] >= _N:
            _twist(key)
            _temper(key, words)
            pos[0] = 0
        p = pos[0]
        m = (_N - p) // 4
        if m == 0:
            # An attempt that straddles two blocks.
            u1 = _uniform(_word(key, words, pos), _word(key, words, pos))
            u2 = _uniform(_word(key, words, pos), _word(key, words, pos))
            s = u1 * u1 + u2 * u2
            if s < 1.0 and s != 0.0:
                if store:
                    x1[found], x2[found], r2[found] = u1, u2, s
                found += 1
            continue
        if not store:
            # Only the count matters while the whole block's attempts are used.
            total = _accepted_count(words, p, m)
            if found + total < npairs:
                found += total
                pos[0] = p + 4 * m
                continue
        for i in range(m):
            o = p + 4 * i
            u1 = _uniform(words[o], words[o + 1])
            u2 = _uniform(words[o + 2], words[o + 3])
            s = u1 * u1 + u2 * u2
            ax1[i] = u1
            ax2[i] = u2
            ar2[i] = s
            ok[i] = (s < 1.0) & (s != 0.0)
        total = 0
        for i in range(m):
            total += ok[i]
        if found + total < npairs:
            # The whole block's attempts are used.
            if store:
                for i in range(m):
                    x1[found], x2[found], r2[found] = ax1[i], ax2[i], ar2[i]
                    found += ok[i]
            else:
                found += total
            pos[0] = p + 4 * m
        else:
            for i in range(m):
                if ok[i]:
                    if store:
                        x1[found], x2[found], r2[found] = ax1[i], ax2[i], ar2[i]
                    found += 1
                    if found == npairs:
                        pos[0] = p + 4 * (i + 1)
                        break


class _Stream:
    """The MT19937 state of a RandomState while numba works on it."""

    def __init__(self, rng: np.random.RandomState):
        name, key, pos, has_gauss, gauss = rng.get_state(legacy=True)
        if name != "MT19937":
            raise ValueError(f"rng must be a legacy MT19937 RandomState, got {name}")
        self.rng = rng
        self.key = np.asarray(key, dtype=np.int64).copy()
        self.words = np.empty(_N, dtype=np.int64)
        _temper(self.key, self.words)
        self.pos = np.array([pos], dtype=np.int64)
        self.has_gauss, self.gauss = bool(has_gauss), float(gauss)

    def pairs(self, npairs: int, x1=None, x2=None, r2=None) -> None:
        """Advance over ``npairs`` accepted pairs, storing them in ``x1, x2, r2``
        (each at least ``npairs + 1`` long: the kernel's branch-free copy may
        write one past the end) unless they are None."""
        store = x1 is not None
        if not store:
            x1 = x2 = r2 = np.empty(0)
        _accepted_pairs(self.key, self.words, self.pos, npairs, x1, x2, r2, store)

    def save(self) -> None:
        self.rng.set_state(("MT19937", self.key.astype(np.uint32), int(self.pos[0]), int(self.has_gauss), self.gauss))


@njit(cache=True, nogil=True)
def _add_pairs(log_r2, r2, x1, x2, scale, out):
    """``out[2i] += scale * f x2[i]``, ``out[2i+1] += scale * f x1[i]`` with
    ``f = sqrt(-2 log(r2) / r2)``, over ``out``; numpy's operation order."""
    for i in range(out.shape[0] // 2):
        f = math.sqrt((log_r2[i] * -2.0) / r2[i])
        out[2 * i] += (f * x2[i]) * scale
        out[2 * i + 1] += (f * x1[i]) * scale
    if out.shape[0] % 2:
        i = out.shape[0] // 2
        out[2 * i] += (math.sqrt((log_r2[i] * -2.0) / r2[i]) * x2[i]) * scale


def _values(stream: _Stream, count: int, out: np.ndarray | None, scale: float) -> None:
    """Draw ``count`` normals; ``out`` (flat) += scale * z, or None to only advance."""
    done = 0
    if count > 0 and stream.has_gauss:
        if out is not None:
            out[0] += scale * stream.gauss
        stream.has_gauss, stream.gauss = False, 0.0
        done = 1
    x1, x2, r2, log_r2 = (np.empty(_CHUNK_PAIRS + 1) for _ in range(4))
    while done < count:
        npairs = min((count - done + 1) // 2, _CHUNK_PAIRS)
        stream.pairs(npairs, x1, x2, r2)
        take = min(2 * npairs, count - done)
        if out is not None:
            np.log(r2[:npairs], out=log_r2[:npairs])
            _add_pairs(log_r2, r2, x1, x2, scale, out[done : done + take])
        done += take
        if take < 2 * npairs:
            # The last pair's second value stays cached, computed as numpy's C code does.
            last = npairs - 1
            stream.has_gauss = True
            stream.gauss = math.sqrt(-2.0 * math.log(r2[last]) / r2[last]) * x1[last]


def standard_normal(rng: np.random.RandomState, shape) -> np.ndarray:
    """``rng.standard_normal(shape)`` (C order): same stream position after, values to an ulp."""
    out = np.zeros(shape)
    add_standard_normal(rng, out, 1.0)
    return out


def add_standard_normal(rng: np.random.RandomState, x: np.ndarray, scale: float) -> None:
    """In place ``x += scale * rng.standard_normal(x.shape)``; ``x`` float64, 1-D or 2-D, rows contiguous."""
    stream = NormalStream(rng)
    stream.add(x, scale)
    stream.save()


def skip_standard_normal(rng: np.random.RandomState, count: int) -> None:
    """Advance ``rng`` exactly as ``rng.standard_normal(count)`` would, without the values."""
    stream = NormalStream(rng)
    stream.skip(count)
    stream.save()


class NormalStream:
    """The standard-normal stream of a RandomState, drawn from here and written back by :meth:`save`.

    :meth:`copy` forks it, so that draws far ahead (after a :meth:`skip`) can
    be taken before the ones in between.
    """

    def __init__(self, rng: np.random.RandomState):
        self._stream = _Stream(rng)

    def copy(self) -> "NormalStream":
        """An independent stream at the same position (saving either writes the same RandomState)."""
        new = object.__new__(NormalStream)
        new._stream = copy.copy(self._stream)
        for name in ("key", "words", "pos"):
            setattr(new._stream, name, getattr(self._stream, name).copy())
        return new

    def add(self, x: np.ndarray, scale: float) -> None:
        """In place ``x += scale * z`` with the next ``x.size`` draws, C order; rows must be contiguous."""
        if x.dtype != np.float64 or x.ndim not in (1, 2) or (x.size and x.strides[-1] != 8):
            raise ValueError("x must be a float64 1-D or 2-D array with contiguous rows")
        rows = x.reshape(1, -1) if x.flags.c_contiguous else x
        for row in rows:
            _values(self._stream, row.size, row, scale)

    def skip(self, count: int) -> None:
        """Advance over ``count`` draws without computing them."""
        stream = self._stream
        if count > 0 and stream.has_gauss:
            stream.has_gauss, stream.gauss = False, 0.0
            count -= 1
        if count > 0:
            # Whole pairs are skipped; an odd count computes the last pair to cache its second value.
            stream.pairs(count // 2)
            if count % 2:
                _values(stream, 1, None, 1.0)

    def save(self) -> None:
        """Write the stream's position back to the RandomState it came from."""
        self._stream.save()
