"""The JSON Schema of instellar.yml: generated from the validator's declaration, shipped,
printed, and in agreement with the validator on a corpus of good and bad configs."""

from __future__ import annotations

import textwrap
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from pakman import config, schema
from pakman.errors import ConfigError
from tests.support.configs import BAD, GOOD
from tests.support.paths import ROOT, V8_CONFIGS

VALIDATOR = jsonschema.Draft202012Validator(schema.generate())

GOOD_CORPUS = {
    **{f"v8-{path.stem}": path.read_text() for path in sorted(V8_CONFIGS.glob("*.yml"))},
    "example-hello": (ROOT / "examples/hello/instellar.yml").read_text(),
    "good": GOOD,
    "static-without-run": "type: static\ndependencies: {runtime: [bash]}\nbuild: {command: make}\n",
    "custom-with-package": (
        "type: custom\ndependencies: {}\nbuild: {command: make}\npackage: |\n  mkdir -p x\n"
    ),
    "empty-optional-keys": GOOD + "stack:\nhook:\nsource:\nlicense:\n",
    "numbers-as-text": GOOD.replace("command: make", "command: 1.5") + "license: 0\n",
    "every-key": GOOD
    + textwrap.dedent("""\
        type: default
        stack: alpine/v3.20
        architectures: [x86_64, aarch64]
        license: MIT OR Apache-2.0
        maintainer: Jane Doe <jane@example.com>
        source: extra.tar
        hook: {post-install: "rc-update add app"}
        kits: [{name: web, ports: [{name: web, target: 3000}]}]
        sizes: [{name: small}]
        plans: [{name: basic}]
        page: {title: App}
        """),
}

BAD_CORPUS = {
    **{
        case: text
        for case, text, _ in BAD
        # YAML that does not parse or is no mapping never reaches a schema.
        if case not in ("broken-yaml", "empty", "top-level-list", "top-level-string")
    },
    "build-destination": GOOD.replace("destinations:", "destination:"),
    "runtime-misspelt": GOOD.replace("runtime:", "runtme:"),
    "architecture-misspelt": GOOD + "architecture: [aarch64]\n",
    "run-process": GOOD.replace("  services:", "  process: web\n  services:"),
    "stop-unknown": GOOD + "      stop: {signal: TERM}\n",
    "stop-kill-text": GOOD + "      stop: {kill: yes please}\n",
    "no-services": GOOD.split("  services:")[0] + "  services: []\n",
    "default-without-run": GOOD.split("run:")[0],
    "empty-architectures": GOOD + "architectures: []\n",
    "maintainer-bare": GOOD + "maintainer: jane\n",
    "kit-without-name": GOOD + "kits: [{description: x}]\n",
}
# What only pakman check refuses: JSON Schema cannot compare list entries' names.
VALIDATOR_ONLY = {"duplicate-service"}


def _raw(text: str) -> Any:
    return yaml.safe_load(textwrap.dedent(text))


def _validator_accepts(text: str) -> bool:
    try:
        config.parse(textwrap.dedent(text))
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("case", sorted(GOOD_CORPUS))
def test_schema_and_validator_accept_the_good(case: str) -> None:
    text = GOOD_CORPUS[case]
    assert _validator_accepts(text), case
    assert [e.message for e in VALIDATOR.iter_errors(_raw(text))] == [], case


@pytest.mark.parametrize("case", sorted(BAD_CORPUS))
def test_schema_and_validator_refuse_the_bad(case: str) -> None:
    text = BAD_CORPUS[case]
    assert not _validator_accepts(text), case
    schema_refuses = not VALIDATOR.is_valid(_raw(text))
    assert schema_refuses is (case not in VALIDATOR_ONLY), case


def test_corpus_covers_every_kind_of_key() -> None:
    assert len(GOOD_CORPUS) >= 12
    assert len(BAD_CORPUS) >= 40


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema.generate())


def test_committed_and_packaged_schema_are_the_generated_one() -> None:
    """No hand-kept copy: the file in the repository (and the package) is the output."""
    assert (ROOT / "pakman/instellar.schema.json").read_text() == schema.text()
    packaged = resources.files("pakman").joinpath("instellar.schema.json")
    assert packaged.read_text() == schema.text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"instellar.schema.json"' in pyproject.split("[tool.setuptools.package-data]")[1]


def test_the_editor_line_is_documented() -> None:
    docs = (ROOT / "docs/configuration.md").read_text()
    assert f"# yaml-language-server: $schema={schema.SCHEMA_URL}" in docs
    assert "pakman schema" in docs


def _paths(key: config.Key, path: str = "") -> list[str]:
    found = []
    for name, child in (key.keys or {}).items():
        where = f"{path}.{name}" if path else name
        found += [where, *_paths(child, where)]
    if key.items is not None:
        found += _paths(key.items, f"{path}[]")
    return found


def test_every_declared_key_is_documented() -> None:
    docs = (ROOT / "docs/configuration.md").read_text()
    missing = [p for p in _paths(config.INSTELLAR) if f"`{p}`" not in docs]
    assert missing == []
