"""The README is a front door, and the documentation's links, file names and structural
claims (the layers of architecture.md, the setup of development.md) hold."""

from __future__ import annotations

import ast
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from pakman import cli, errors
from tests.support.docpages import DOCS, README, ROOT, code_blocks, commands, pages, paths

MAIN_JOB = (
    "dagger call -m github.com/upmaru/pakman@main build --source . --repository acme/app \\\n"
    "  --platforms linux/amd64,linux/arm64 \\\n"
    "  --private-key env:ABUILD_PRIVATE_KEY --public-key env:ABUILD_PUBLIC_KEY"
    " export --path packages --wipe\n"
)


def test_the_readme_is_a_front_door() -> None:
    """Under 150 lines; its first screen gives the two commands for a fresh machine, and
    it links every page of docs/."""
    text = README.read_text()
    assert len(text.splitlines()) < 150
    first_screen = "\n".join(text.splitlines()[:25]) + "\n"
    assert MAIN_JOB in first_screen
    assert "\nbash scripts/test.sh\n" in first_screen
    assert (ROOT / "scripts" / "test.sh").is_file()
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)[#)]", text))
    assert linked == {page.name for page in DOCS.glob("*.md")}


def _without_code(text: str) -> str:
    """The text outside fenced code blocks (a shell comment is not a heading)."""
    return re.sub(r"^ *```.*?^ *```", "", text, flags=re.MULTILINE | re.DOTALL)


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces
    made hyphens, and -1, -2... for repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code(text), re.MULTILINE):
        slug = "".join(
            c for c in heading.strip().lower() if c in " -_" or unicodedata.category(c)[0] in "LN"
        ).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_anchors_follow_githubs_rules() -> None:
    text = "# The `pakman` CLI\n## Quick start: every Dagger function\n## A\n## A\n```sh\n# no\n```"
    assert _anchors(text) == {"the-pakman-cli", "quick-start-every-dagger-function", "a", "a-1"}


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _without_code(text))


@pytest.mark.parametrize("page", paths(), ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_and_anchor(page: Path) -> None:
    broken = []
    for target in _links(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        where = (page.parent / file).resolve() if file else page
        inside = where.exists() and where.resolve().is_relative_to(ROOT)
        if not inside or (anchor and anchor not in _anchors(where.read_text())):
            broken.append(target)
    assert broken == []


def test_every_file_the_docs_name_exists() -> None:
    """A file of this repository named in the documentation (`tests/rig.py`) is there."""
    named = re.compile(
        r"`((?:pakman|ci|tests|scripts|benchmarks|examples|action|\.github|\.ci)/[\w./-]+"
        r"\.(?:py|sh|yml|yaml|json|toml|txt|lock|md))`"
    )
    missing = {
        f"{name}: {path}"
        for name, text in pages().items()
        for path in named.findall(text)
        if not (ROOT / path).is_file()
    }
    assert missing == set()


def test_the_exit_codes_the_readme_gives_are_the_errors_ones() -> None:
    line = re.search(r"Exit codes: 1 (.*?), 2 (.*?), 3 (.*?)\.", README.read_text())
    assert line is not None
    assert line.groups() == (
        "verification failed",
        "bad input",
        "storage or API refused or unreachable",
    )
    assert errors.VerificationError.exit_code == 1
    assert errors.ConfigError.exit_code == 2
    assert errors.PublishError.exit_code == 3


def test_every_pakman_command_shown_parses() -> None:
    """Each `pakman ...` line of a shell block in the README and docs/ is accepted by the
    real argument parser: no option the docs show is missing or misspelt."""
    parser = cli.build_parser()
    shown = 0
    for name, text in pages().items():
        for block in code_blocks(text, "sh"):
            for words in commands(block):
                if words[0] != "pakman" or "--help" in words:
                    continue
                shown += 1
                given = words[1:]
                if given[:2] == ["repo", "check"]:  # parsed as its own command, as main() does
                    given = ["repo-check", *given[2:]]
                try:
                    parser.parse_args(given)
                except (Exception, SystemExit) as refused:  # any refusal
                    pytest.fail(f"{name}: {' '.join(words)}: {refused}")
    assert shown >= 8


# --- architecture.md: the layers --------------------------------------------------------


def _modules() -> dict[str, Path]:
    """Every module of the library, by dotted name."""
    found = {}
    for path in sorted((ROOT / "pakman").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ``known`` that ``module`` imports, at any depth of its code (also
    inside functions and ``if TYPE_CHECKING:``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                whole = f"{base}.{alias.name}"
                found.add(whole if whole in known else base)
    return found


def _layers() -> dict[str, int]:
    """architecture.md's table: each entry as a dotted name with its layer. A folder
    (`pakman/storage/`) ends in a dot and holds every module under it; a file
    (`pakman/errors.py`, `pakman/__init__.py`) is that module alone."""
    text = (DOCS / "architecture.md").read_text()
    table = text[text.index("| layer | name | modules |") :]
    layers = {}
    for number, entries in re.findall(r"^\| (\d) \| [^|]+ \| (.+) \|$", table, re.MULTILINE):
        for entry in re.findall(r"`([^`]+)`", entries):
            if entry.startswith("pakman"):
                name = entry.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                layers[name] = int(number)
            else:
                assert (ROOT / entry).is_dir(), entry
    return layers


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    if module in layers:
        return layers[module]
    folders = [n for n in layers if n.endswith(".") and (module + ".").startswith(n)]
    return layers[max(folders, key=len)] if folders else None


def test_the_layers_of_architecture_md_hold_for_every_import() -> None:
    """Every module is in a layer of the table, every entry of the table names modules,
    and no module imports one of a higher layer."""
    modules, layers = _modules(), _layers()
    assert len(set(layers.values())) >= 5
    assert {m: _layer_of(m, layers) for m in modules if _layer_of(m, layers) is None} == {}
    for entry in layers:
        assert any(m == entry or (m + ".").startswith(entry) for m in modules), entry
    upward = set()
    for module, path in modules.items():
        own = _layer_of(module, layers)
        for imported in _imports(module, path, modules):
            theirs = _layer_of(imported, layers) if imported in modules else None
            if own is not None and theirs is not None and theirs > own:
                upward.add(f"{module} ({own}) imports {imported} ({theirs})")
    assert upward == set()
    # Storage sits above the stages (none imports it) yet imports only the basics.
    assert (
        "pakman/storage/   (no stage imports it; it imports"
        in (DOCS / "architecture.md").read_text()
    )
    storage_using_stages = {
        f"{module} imports {imported}"
        for module, path in modules.items()
        if _layer_of(module, layers) == 3
        for imported in _imports(module, path, modules)
        if imported in modules and _layer_of(imported, layers) == 2
    }
    assert storage_using_stages == set()


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    path = tmp_path / "errors.py"
    path.write_text("def f():\n    from pakman.pipeline import publish\n")
    known = _modules()
    assert "pakman.pipeline" in _imports("pakman.errors", path, known)
    assert _layer_of("pakman.pipeline", _layers()) == 5
    assert _layer_of("pakman.errors", _layers()) == 1


def test_the_library_imports_nothing_of_dagger() -> None:
    modules = _modules()
    for module, path in modules.items():
        imported = _imports(module, path, modules)
        assert not {i for i in imported if i.split(".")[0] in ("dagger", "pakman_ci")}, module


# --- development.md ---------------------------------------------------------------------


def test_the_development_page_describes_the_setup_there_is() -> None:
    page = (DOCS / "development.md").read_text()
    script = (ROOT / "scripts" / "test.sh").read_text()
    version = re.search(r"^VERSITYGW_VERSION=(\S+)$", script, re.MULTILINE)
    assert version is not None
    assert f"versitygw) {version.group(1)}" in page
    assert f"`~/.cache/pakman-tools/versitygw-{version.group(1)}/`" in page
    for step in ("ruff check", "ruff format --check", "mypy pakman", "python -m pytest"):
        assert step in script, step
    assert "collected no tests" in script
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert f"after\n{pytest_options['ini_options']['timeout']} s" in page
    assert 'export CI="${CI:-true}"' in (ROOT / ".ci" / "run").read_text()
    rig = next((ROOT / "tests").rglob("rig.py"))  # need(): a skip, or under CI=true a failure
    assert 'os.environ.get("CI") == "true"' in rig.read_text()
    assert "pytest.fail(" in rig.read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    for variable in ("PAKMAN_UPDATE_GOLDEN", "PAKMAN_TOOLS"):
        assert variable in page
        assert f'"{variable}"' in tests, variable


# --- workflow snippets ------------------------------------------------------------------


def _steps(node: object) -> list[dict[str, Any]]:
    """Every step (a mapping with `uses` or `run`) of a parsed workflow or snippet."""
    if isinstance(node, dict):
        own = [node] if "uses" in node or "run" in node else []
        return own + [s for value in node.values() for s in _steps(value)]
    if isinstance(node, list):
        return [s for item in node for s in _steps(item)]
    return []


def test_workflow_snippets_are_steps_of_the_example_workflows() -> None:
    """Each step of a YAML snippet in the README and docs/ is a step of the workflows a
    user copies: the same action at the same version, with inputs it is given there; or
    the same command in the same shell."""
    examples = [*(ROOT / "examples" / "github").glob("*.yml")]
    real = [s for path in examples for s in _steps(yaml.safe_load(path.read_text()))]
    inputs: dict[str, set[str]] = {}
    for step in real:
        if "uses" in step:
            inputs.setdefault(step["uses"], set()).update(step.get("with") or {})
    shells = {str(s["run"]).strip(): s.get("shell") for s in real if "run" in s}
    snippets = 0
    for name, text in pages().items():
        for block in code_blocks(text, "yaml"):
            for step in _steps(yaml.safe_load(block)):
                snippets += 1
                if "uses" in step:
                    assert step["uses"] in inputs, f"{name}: {step['uses']}"
                    given = set(step.get("with") or {})
                    assert given <= inputs[step["uses"]], f"{name}: {step['uses']} with {given}"
                else:
                    run = str(step["run"]).strip()
                    assert run in shells, f"{name}: run {run}"
                    assert shells[run] == step.get("shell"), f"{name}: {run}"
    assert snippets >= 10
