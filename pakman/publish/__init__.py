"""Publish a packages tree and its archive: idempotent, resumable, manifest last.

Layout (compatible with v8):
- ``deployments/<org>/<slug>/<sha>/<arch>/<file>`` for every package file;
- ``archives/<sha256 of the zip>/packages.zip``: a retry re-uses the same key;
- ``deployments/<org>/<slug>/<sha>/manifest.json``, written last. A reader that
  sees the manifest knows every object it lists is in place.

The modules, in the order a publish uses them: :mod:`.deployment` (what is published),
:mod:`.prefetch` (the archive and storage read beside verification), :mod:`.archive` (one
read of the archive), :mod:`.plan` (keys, the archive check, what storage holds),
:mod:`.upload` (carrying the plan out), :mod:`.deploy` and :mod:`.instellar` (registering
the deployment with OpsMaru/Instellar). Storage itself is :mod:`pakman.storage`.
"""
