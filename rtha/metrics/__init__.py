"""Speech intelligibility and quality metrics: HASPI v2 and HASQI v2 (Kates & Arehart).

Both rest on the auditory ear model in :mod:`rtha.metrics.ear_model`; their
numbers equal pyclarity 0.9.0's when given the same noise stream
(``rng=numpy.random.RandomState(seed)`` here, ``numpy.random.seed(seed)`` there).
"""

from .combined import hasqi_v2_better_ear, icassp2023_score, scene_seed
from .haspi import haspi_v2, haspi_v2_better_ear
from .hasqi import hasqi_v2

__all__ = [
    "haspi_v2",
    "haspi_v2_better_ear",
    "hasqi_v2",
    "hasqi_v2_better_ear",
    "icassp2023_score",
    "scene_seed",
]
