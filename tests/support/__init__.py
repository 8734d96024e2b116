"""Helpers of the tests (fixtures live in tests/conftest.py): paths, the CLI runner, the
pytest face of the Alpine rig, fake servers. What benchmarks share with them is in devkit/."""
