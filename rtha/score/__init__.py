"""Offline scoring: rtha's chain over a Clarity-format dataset, HASPI v2 / HASQI v2 better ear.

- :mod:`.pairs`: (scene, listener) pairs, shards, the per-scene metric seed;
- :mod:`.config`: run settings and each system's chain configuration;
- :mod:`.pair`: the per-pair recipe (read, chain, reference, metrics);
- :mod:`.run`: the process pool, progress and resumable CSV writing;
- :mod:`.results`: the scores CSV (read, append, merge);
- :mod:`.summary`, :mod:`.report`, :mod:`.plots`: means with 95% CIs, report.json, figures.
"""
