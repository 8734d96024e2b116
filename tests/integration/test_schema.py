"""The JSON Schema of instellar.yml: generated from the validator's declaration, shipped,
printed, and in agreement with the validator on a corpus of good and bad configs."""

from __future__ import annotations

import json

from pakman import schema
from tests.support.cli import run_pakman


def test_pakman_schema_prints_it() -> None:
    result = run_pakman("schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == schema.text()
    assert json.loads(result.stdout)["$id"] == schema.SCHEMA_URL
