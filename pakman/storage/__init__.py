"""Where packages go: an S3-compatible bucket or a folder laid out like one.

:mod:`.objects` describes local and remote objects and the store protocol; :mod:`.s3`,
:mod:`.multipart` and :mod:`.s3errors` are the bucket; :mod:`.filestore` is the folder;
:mod:`.target` turns ``--store``/``--bucket`` into one; :mod:`.options` holds the
validated store options and opens a store with them.
"""
