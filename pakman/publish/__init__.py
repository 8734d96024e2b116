"""Publish a packages tree and its archive: idempotent, resumable, manifest last.

Layout (compatible with v8):
- ``deployments/<org>/<slug>/<sha>/<arch>/<file>`` for every package file;
- ``archives/<sha256 of the zip>/packages.zip``: a retry re-uses the same key;
- ``deployments/<org>/<slug>/<sha>/manifest.json``, written last. A reader that
  sees the manifest knows every object it lists is in place.

The modules, in the order a publish uses them: :mod:`.prefetch` (the archive and storage
read beside verification), :mod:`.archive` (one read of the archive), :mod:`.plan` (keys,
the archive check, what storage holds), :mod:`.upload` (carrying the plan out),
:mod:`.objects` (local and remote objects, the store protocol), :mod:`.target`
(``--store`` or ``--bucket``), :mod:`.s3`, :mod:`.multipart` and :mod:`.errors` (S3),
:mod:`.filestore` (a folder).
"""

from pakman.publish.objects import LocalObject, RemoteObject, Store, hash_file, local_object
from pakman.publish.plan import MANIFEST, Deployment, Plan, check_archive
from pakman.publish.upload import ProgressFactory, Summary, publish

__all__ = [
    "MANIFEST",
    "Deployment",
    "LocalObject",
    "Plan",
    "ProgressFactory",
    "RemoteObject",
    "Store",
    "Summary",
    "check_archive",
    "hash_file",
    "local_object",
    "publish",
]
