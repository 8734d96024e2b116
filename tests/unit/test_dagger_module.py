"""The Dagger module's surface, typed and dispatched offline (no engine here)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
import shlex
from typing import Any, cast

import pytest
import yaml

from pakman.recipe import SOURCE_IGNORE
from pakman.storage.options import DEFAULT_CONCURRENCY, AddressingStyle
from tests.support import docpages, rig
from tests.support.paths import ROOT

try:
    import dagger
    from pakman_ci import Pakman
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "dagger-io and the pakman-ci module are not installed (pip install -e ./ci)")
    raise

# Set by @object_type at runtime; the SDK does not declare them on the class.
MODULE: Any = cast(Any, Pakman).__dagger_module__
FUNCTIONS: dict[str, Any] = cast(Any, Pakman).__dagger_object_type__.functions


def test_exact_function_set() -> None:
    assert set(FUNCTIONS) == {
        "builder",
        "recipe",
        "bootstrap",
        "build",
        "merge",
        "publish",
        "deploy",
        "repo",
        "keygen",
        "check",
    }


def test_every_function_and_argument_is_documented() -> None:
    for name, fn in FUNCTIONS.items():
        assert fn.doc, name
        assert fn.doc.strip().splitlines()[0].endswith("."), name
        for parameter in fn.parameters.values():
            assert parameter.doc, f"{name}.{parameter.name} has no Doc()"


def params(name: str) -> dict[str, Any]:
    return {p.name: p for p in FUNCTIONS[name].parameters.values()}


def test_build_signature() -> None:
    p = params("build")
    assert list(p) == [
        "source",
        "repository",
        "private_key",
        "public_key",
        "platforms",
        "version",
        "build_number",
    ]
    assert p["source"].resolved_type is dagger.Directory
    assert p["source"].default_path == "/"
    assert p["source"].ignore == list(SOURCE_IGNORE)  # the library's list, see test_recipe
    assert ".git" not in p["source"].ignore  # git describe needs it; the build drops it
    assert p["private_key"].resolved_type is dagger.Secret
    assert not p["private_key"].is_optional
    assert p["public_key"].resolved_type is dagger.Secret
    assert p["platforms"].resolved_type == list[dagger.Platform]
    assert json.loads(p["platforms"].default_value) == ["linux/amd64"]
    assert json.loads(p["version"].default_value) == ""
    assert json.loads(p["build_number"].default_value) == 0
    assert FUNCTIONS["build"].return_type is dagger.Directory


def test_other_signatures() -> None:
    assert list(params("bootstrap")) == ["source", "repository", "version", "build_number"]
    assert FUNCTIONS["bootstrap"].return_type is dagger.Changeset
    assert params("builder")["platform"].resolved_type is dagger.Platform
    assert json.loads(params("builder")["platform"].default_value) == "linux/amd64"
    assert FUNCTIONS["builder"].return_type is dagger.Container
    assert list(params("merge")) == ["packages", "repository", "public_key", "skip_verify"]
    assert FUNCTIONS["merge"].return_type is dagger.File
    assert list(params("keygen")) == ["repository"]
    assert params("check")["source"].default_path == "/"
    for name in ("publish", "deploy"):
        secrets = [n for n, p in params(name).items() if p.resolved_type in (dagger.Secret,)]
        assert secrets, name
    # Credentials only ever arrive as secrets.
    assert params("publish")["access_key_id"].resolved_type is dagger.Secret
    assert params("publish")["secret_access_key"].resolved_type is dagger.Secret
    assert params("deploy")["instellar_auth_token"].resolved_type is dagger.Secret
    for name, fn in FUNCTIONS.items():
        for parameter in fn.parameters.values():
            lowered = parameter.name.lower()
            if (
                any(word in lowered for word in ("key", "token", "secret"))
                and lowered != "key_name"
            ):
                assert parameter.resolved_type in (dagger.Secret, dagger.Secret | None), (
                    f"{name}.{parameter.name} must be a Secret"
                )


def test_publish_and_deploy_agree_with_the_cli() -> None:
    """Verification is required unless skipped; the archive is optional; same defaults."""

    for name in ("publish", "merge"):
        p = params(name)
        assert p["public_key"].resolved_type == dagger.Secret | None
        assert json.loads(p["skip_verify"].default_value) is False
    assert params("deploy")["public_key"].resolved_type is dagger.Secret
    for name in ("publish", "deploy"):
        p = params(name)
        assert p["archive"].resolved_type == dagger.File | None
        assert json.loads(p["concurrency"].default_value) == DEFAULT_CONCURRENCY
    p = params("publish")
    assert p["addressing_style"].resolved_type is AddressingStyle
    assert json.loads(p["region"].default_value) == ""  # resolved by the pipeline: us-east-1


def test_outside_world_and_fresh_keys_are_never_cached() -> None:
    """A retried publish must really retry, and keygen must not hand out a cached key."""
    assert FUNCTIONS["publish"].cache_policy == "never"
    assert FUNCTIONS["deploy"].cache_policy == "never"
    assert FUNCTIONS["keygen"].cache_policy == "never"
    assert FUNCTIONS["repo"].cache_policy == "never"
    assert FUNCTIONS["build"].cache_policy is None


def test_the_main_module_has_no_checks() -> None:
    """A check must pass with no arguments; check needs the caller's instellar.yml."""
    assert {name for name, fn in FUNCTIONS.items() if fn.check} == set()


def test_dagger_json() -> None:
    config = json.loads((ROOT / "dagger.json").read_text())
    assert config["$schema"] == "https://docs.dagger.io/reference/dagger.schema.json"
    assert config["source"] == "ci"
    assert (ROOT / "ci" / "uv.lock").is_file()


def test_typedefs_would_register() -> None:
    """_typedefs() only fails at the very end, on the missing engine connection."""
    module = MODULE
    with pytest.raises(dagger.ClientConnectionError):
        asyncio.run(module._typedefs())


def test_recipe_through_the_module_dispatch() -> None:
    module = MODULE
    result = asyncio.run(
        module.get_result("Pakman", {"alpine": "v3.21"}, "recipe", {"platform": "linux/arm64"})
    )
    data = json.loads(result)
    assert data["image"] == "alpine:3.21"
    assert data["arch"] == "aarch64"
    assert all(c["key"].endswith("-v3.21-aarch64") for c in data["caches"])
    stacked = asyncio.run(module.get_result("Pakman", {}, "recipe", {"stack": "3.18"}))
    assert json.loads(stacked)["image"] == "alpine:3.18"


def test_dispatch_reports_bad_input_clearly() -> None:
    module = MODULE
    with pytest.raises(Exception, match="platform: not supported"):
        asyncio.run(module.get_result("Pakman", {}, "recipe", {"platform": "plan9/mips"}))


def test_a_refusal_reaches_the_caller_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK logs any exception but its own FunctionError with the whole traceback into
    the function's output (dagger/mod/_module.py: Module.call)."""
    from dagger.mod._exceptions import FunctionError

    with caplog.at_level("DEBUG"), pytest.raises(FunctionError) as raised:
        asyncio.run(MODULE.get_result("Pakman", {}, "recipe", {"platform": "plan9/mips"}))
    assert str(raised.value).startswith("platform: not supported (got 'plan9/mips'")
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text


def test_repo_reads_only_the_config_of_a_default_source() -> None:
    """Like every other source: the app's root by default (the CLI reads ./instellar.yml),
    and an upload that leaves out everything but YAML files."""
    from pakman.recipe import CONFIG_ONLY
    from tests.support.enginepatterns import engine_ignores

    p = params("repo")
    assert p["source"].resolved_type is dagger.Directory
    assert p["source"].default_path == "/"
    assert p["source"].ignore == list(CONFIG_ONLY)
    kept = ["instellar.yml", "deploy/instellar.yml", "config/instellar.yaml"]
    dropped = ["src/app.py", "node_modules/x/index.js", "packages.zip", ".git/HEAD", "README"]
    assert [path for path in kept if engine_ignores(path, CONFIG_ONLY)] == []
    assert [path for path in dropped if not engine_ignores(path, CONFIG_ONLY)] == []


def documented() -> dict[str, str]:
    """The README and every docs/ page, by name, with the examples a user copies."""
    examples = [
        ROOT / "examples" / "hello" / "README.md",
        *(ROOT / "examples" / "github").glob("*.yml"),
        *(ROOT / ".github" / "workflows").glob("*.yml"),
    ]
    shown = {str(path.relative_to(ROOT)): path.read_text() for path in examples}
    return {**docpages.pages(), **shown}


def test_every_documented_export_of_packages_wipes_the_folder() -> None:
    """Directory.export merges into the folder (core/schema/directory.go: wipe): an old
    .apk left beside the new index makes merge refuse the second local build."""
    exports = 0
    for name, text in documented().items():
        for found in re.finditer(r"export --path (\S+?)`?(?=\s|$)(.*)", text):
            target, rest = found.group(1), found.group(2)
            if target.endswith(".zip") or target == "keys/":  # a file; a folder of keys
                continue
            exports += 1
            assert rest.lstrip().startswith("--wipe"), f"{name}: {found.group(0)}"
    assert exports >= 4
    assert "keygen" in documented()["dagger.md"]
    assert "`keygen` export into `keys/` merges on purpose" in documented()["dagger.md"]


def test_the_dagger_page_says_what_the_module_does() -> None:
    """docs/dagger.md: each claim against the code it describes."""
    from pakman_tests.install import FROM_ALPINE

    from pakman import recipe

    page = documented()["dagger.md"]
    rows = re.findall(r"^\| `([a-z]+)` \| .* \| (yes|never) \|$", page, re.MULTILINE)
    assert {name: cached for name, cached in rows} == {
        name: "never" if fn.cache_policy == "never" else "yes"
        for name, fn in FUNCTIONS.items()
        if name  # "" is the constructor, once dispatch has registered it
    }
    shown = re.search(r"only the YAML files \((.*?)\)", page)
    assert shown is not None
    assert tuple(re.findall(r"`([^`]+)`", shown.group(1))) == recipe.CONFIG_ONLY
    assert "`~/.abuild/" + recipe.throwaway_key("<arch>") + "`" in page
    assert f"`{recipe.Signing('', '').signer}`" in page
    apk_cache = next(c for c in recipe.builder("v3.20", "linux/amd64").caches if c.setup_only)
    assert apk_cache.key == "pakman-apk-v3.20-x86_64"
    assert "`pakman-apk-<branch>-<arch>`" in page
    assert apk_cache.locked
    assert "mounted `LOCKED` for the set-up steps" in page
    assert "1. `bash`, `s6` and `execline` come from Alpine's own repositories" in page
    assert FROM_ALPINE == ("bash", "s6", "execline")
    assert "(`recipe.SOURCE_IGNORE`)" in page
    never = re.search(
        r'whose cache is "never" in the table above \((.*?)\)', " ".join(page.split())
    )
    assert never is not None
    named = set(re.findall(r"`([a-z]+)`", never.group(1)))
    assert named == {name for name, fn in FUNCTIONS.items() if fn.cache_policy == "never"}


def _call_problems(words: list[str]) -> list[str]:
    """What is wrong with one `dagger call` (the words after `call`): the function and every
    argument it names must be the module's, and every required one given. What follows
    the function's arguments (`export --path ...`, `terminal`) is the engine's."""
    constructor = set(inspect.signature(Pakman).parameters)
    problems: list[str] = []
    i = 0
    while i < len(words) and words[i].startswith("-"):  # -m MODULE, then the constructor's
        name, eq, _ = words[i].lstrip("-").partition("=")
        if name != "m" and name.replace("-", "_") not in constructor:
            problems.append(f"the module takes no --{name}")
        i += 1 if eq else 2
    if i >= len(words) or words[i] not in FUNCTIONS:
        return [*problems, f"no function {words[i] if i < len(words) else '(none)'}"]
    called = words[i]
    parameters = {p.name.replace("_", "-"): p for p in FUNCTIONS[called].parameters.values()}
    given: set[str] = set()
    i += 1
    while i < len(words) and words[i].startswith("--"):
        name, eq, _ = words[i][2:].partition("=")
        parameter = parameters.get(name)
        if parameter is None:
            problems.append(f"{called}: no --{name}")
        given.add(name)
        i += 1 if eq or (parameter is not None and parameter.resolved_type is bool) else 2
    required = {
        name
        for name, p in parameters.items()
        if not p.is_optional and p.default_value is None and not p.default_path
    }
    return problems + [f"--{name} missing" for name in sorted(required - given)]


def _shown_calls() -> list[tuple[str, list[str]]]:
    """Every `dagger call` of the module a user is shown: in the shell blocks of the README
    and docs/, in their YAML blocks and in the example and own workflows."""
    calls = []
    for name, text in documented().items():
        blocks = docpages.code_blocks(text, "sh")
        for block in blocks:
            for words in docpages.commands(block):
                if words[:2] == ["dagger", "call"]:
                    calls.append((name, words[2:]))
        documents = docpages.code_blocks(text, "yaml") if name.endswith(".md") else [text]
        for document in documents:
            for step in _mappings(yaml.safe_load(document)):
                module = str(step.get("module", ""))
                if "call" in step and (
                    "upmaru/pakman" in module or module in (".", "${{ env.PAKMAN_MODULE }}")
                ):
                    expression = re.sub(r"\$\{\{.*?\}\}", "EXPR", step["call"])  # ${{ github.sha }}
                    calls.append((name, shlex.split(expression)))
    return calls


def _mappings(node: object) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(m for value in node.values() for m in _mappings(value))]
    if isinstance(node, list):
        return [m for item in node for m in _mappings(item)]
    return []


def test_every_dagger_call_shown_names_real_functions_and_arguments() -> None:
    calls = _shown_calls()
    problems = {
        f"{name}: {' '.join(words)}: {p}" for name, words in calls for p in _call_problems(words)
    }
    assert problems == set()
    shown = {words[next(i for i, w in enumerate(words) if w in FUNCTIONS)] for _, words in calls}
    assert shown == set(FUNCTIONS) - {""}  # every function is shown at least once
    assert {name for name, _ in calls} >= {"README.md", "dagger.md", "github-actions.md"}


def test_the_call_check_sees_a_wrong_argument() -> None:
    assert _call_problems(["-m", "$M", "merge", "--packages", "p", "--repository", "a/b"]) == []
    assert _call_problems(["-m", "$M", "--alpine", "edge", "check", "--source", "."]) == []
    assert _call_problems(["-m", "$M", "merge", "--package", "p", "--repository", "a/b"]) == [
        "merge: no --package",
        "--packages missing",
    ]
    assert _call_problems(["-m", "$M", "--stack", "x", "verify"]) == [
        "the module takes no --stack",
        "no function verify",
    ]
    assert _call_problems(["merge", "--skip-verify", "--packages", "p", "--repository", "a"]) == []


def test_the_python_examples_call_dag_pakman_with_real_arguments() -> None:
    """`dag.pakman().build(...)` in the README and docs/: real functions, real keyword
    arguments (the Python names of the module's parameters), every required one given."""
    checked = 0
    for name, text in docpages.pages().items():
        for block in docpages.code_blocks(text, "python"):
            for node in ast.walk(ast.parse(block)):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = node.func.value
                if not (isinstance(owner, ast.Call) and ast.unparse(owner) == "dag.pakman()"):
                    continue
                checked += 1
                function = FUNCTIONS.get(node.func.attr)
                assert function is not None, f"{name}: {ast.unparse(node)}"
                parameters = {p.name: p for p in function.parameters.values()}
                given = {k.arg for k in node.keywords}
                assert given <= set(parameters), f"{name}: {given - set(parameters)}"
                required = {
                    n
                    for n, p in parameters.items()
                    if not p.is_optional and p.default_value is None and not p.default_path
                }
                assert required <= given, f"{name}: {ast.unparse(node)} lacks {required - given}"
    assert checked >= 3  # the README's build; dagger.md's build and merge
