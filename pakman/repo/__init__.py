"""Serve packages as a signed apk repository in the user's bucket (``pakman repo``).

:mod:`.index` writes and signs the v2 ``APKINDEX.tar.gz``; :mod:`.next_index` decides, as a
pure function, what the next index holds (added, unchanged, replaced, pruned);
:mod:`.repository` reads the current index, uploads packages, commits the index with a
conditional write and prunes, in that order; :mod:`.state` keeps what the index
remembers beyond its records; :mod:`.check` reads a repository as a host does.
"""
