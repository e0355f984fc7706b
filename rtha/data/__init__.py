"""Clarity-format data: the reader and training segments (:mod:`.clarity`) and the
scene generator (:mod:`.scenes`, CLI ``tools/make_scenes.py``)."""

from .clarity import KINDS, ClarityDataset, SceneSegments, scene_groups, snr_band

__all__ = ["KINDS", "ClarityDataset", "SceneSegments", "scene_groups", "snr_band"]
