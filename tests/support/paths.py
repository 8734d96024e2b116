"""Where things are: the repository, the test fixtures and the v8 config corpus."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
V8_CONFIGS = FIXTURES / "v8"
# The repository each v8 fixture belongs to: its run.name is the package name.
V8_REPOSITORIES = {
    "astro": "artellectual/artellectual.com",
    "caddy": "upmaru/uplink-caddy",
    "elixir": "upmaru/rdio",
    "laravel": "upmaru/laraone",
    "next": "upmaru/nimbus",
    "rails": "upmaru/locomo",
}
