"""Built-in check plugins of bwdoctor, by role.

- ``collectors/``: read the live machine (NVML, package metadata, binaries, probes, the smoke
  generation, an endpoint). The only modules here that touch the outside world.
- ``parsers/``: read evidence files into facts.
- ``checks/``: pure functions of the facts, one module per id area (``gpu`` = BWD-GPU/BWD-DRV,
  ``stack`` = BWD-STACK/BWD-FP8, ``cfg`` = BWD-CFG/BWD-FP8V, ``log`` = BWD-LOG/BWD-ENV, ...).
- ``_lib/``: private helpers shared by the modules above (no hooks).

Each module of the first three folders is one plugin, registered by the host from its
``DEFAULT_PLUGINS`` tuple through the same API a third-party plugin uses.
"""
