"""How the selftest installs a built package on Alpine, as plain data.

The engine test runs these commands in an ``alpine`` container; the offline test
(tests/system/test_dagger_selftest.py) runs the very same ones in an Alpine root, against a
stand-in for Alpine's repositories and a built repository.
"""

# What the package needs from Alpine's own repositories: bash (examples/hello's runtime
# dependency), s6 and execline (the supervisor of every default-type package's service).
# They are installed first, trusting Alpine's keys; a built repository does not hold them.
FROM_ALPINE = ("bash", "s6", "execline")


def install_commands(repository: str, keys_dir: str, package: str) -> list[list[str]]:
    """Alpine's packages from Alpine's repositories, then ``package`` from ``repository``
    alone, trusting only the keys in ``keys_dir``."""
    return [
        ["apk", "add", "--no-cache", *FROM_ALPINE],
        [
            "apk",
            "add",
            "--no-cache",
            "--repositories-file",
            "/dev/null",
            "--repository",
            repository,
            "--keys-dir",
            keys_dir,
            package,
        ],
    ]
