"""The development kit that tests/ and benchmarks/ share: real signed apk packages
(:mod:`devkit.apkfactory`), real S3 servers on 127.0.0.1 (:mod:`devkit.s3`), the Alpine
chroot rig (:mod:`devkit.alpine`) and the tools they find (:mod:`devkit.tools`).

It imports no test framework: a missing tool raises :class:`devkit.tools.Missing`, which
the tests turn into a skip (a failure under CI=true) and a benchmark reports. It is not
shipped (the wheel holds ``pakman`` only); both find it from the repository root.
"""
