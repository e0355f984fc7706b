"""Which (scene, listener) pairs a run scores: enumeration and shards."""

from __future__ import annotations

from ..errors import RthaError


def scene_listener_pairs(scenes_listeners: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Every ``(scene, listener id)`` pair, in the order of ``scenes_listeners.{split}.json``."""
    return [(scene, listener) for scene, listeners in scenes_listeners.items() for listener in listeners]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``1 <= i <= N`` (shards are numbered from 1)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise RthaError(f"--shard {text!r}: expected i/N with whole numbers, e.g. 1/4") from None
    if n < 1 or not 1 <= i <= n:
        raise RthaError(f"--shard {text!r}: expected 1 <= i <= N (shards are numbered from 1), e.g. 1/4 ... 4/4")
    return i, n


def select_shard(pairs: list, i: int, n: int) -> list:
    """Shard ``i`` of ``n`` (from 1): every n-th pair starting at pair ``i-1``.

    Interleaving keeps the shards balanced when scene difficulty drifts along
    the list; together the ``n`` shards hold every pair exactly once.
    """
    return pairs[i - 1 :: n]
