"""Training the causal Conv-TasNet: TOML config (:mod:`.config`) and trainer (:mod:`.train`).

Run as ``rtha train CONFIG.toml``; configs live in ``training/configs/``.
"""
