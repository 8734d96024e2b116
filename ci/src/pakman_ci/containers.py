"""The library's recipes (:mod:`pakman.recipe`) folded into engine containers: the build
container with its set-up steps and cache volumes, the keyless build of each platform,
and the small container that reads the source's git facts."""

from dataclasses import dataclass, field
from pathlib import Path

import anyio
import dagger

from pakman import bootstrap
from pakman import recipe as recipes
from pakman.errors import PakmanError
from pakman.identity import GitFacts, git_probe, read_git_probe
from pakman_ci import engine


async def git_facts(source: dagger.Directory) -> GitFacts:
    """Version, commit time and commit of the source, read as the CLI reads them."""
    out = await (
        engine.dag.container()
        .from_(recipes.TOOLS_IMAGE)
        .with_exec(["apk", "add", "--no-cache", "git"])
        .with_directory("/src", source)
        .with_exec(["sh", "-c", git_probe("/src")])
        .stdout()
    )
    return read_git_probe(out)


def _mounted(ctr: dagger.Container, cache: recipes.Cache) -> dagger.Container:
    sharing = dagger.CacheSharingMode.LOCKED if cache.locked else dagger.CacheSharingMode.SHARED
    return ctr.with_mounted_cache(
        cache.path, engine.dag.cache_volume(cache.key), sharing=sharing, owner=cache.owner
    )


def builder(branch: str, platform: dagger.Platform) -> dagger.Container:
    """The Alpine build container: the recipe's image, its root set-up steps and caches."""
    r = recipes.builder(branch, str(platform))
    ctr = engine.dag.container(platform=platform).from_(r.image)
    setup = [cache for cache in r.caches if cache.setup_only]
    for cache in setup:
        ctr = _mounted(ctr, cache)
    for step in r.root_steps:
        ctr = ctr.with_exec(list(step.args))
    for cache in setup:  # its lock is released with the root steps' last exec
        ctr = ctr.without_mount(cache.path)
    for cache in r.caches:
        if not cache.setup_only:  # after the build user and its directories exist
            ctr = _mounted(ctr, cache)
    return ctr.with_user(r.user).with_workdir(r.workdir)


def rendered(plan: bootstrap.Plan) -> dagger.Directory:
    """The plan's rendered files, under .apk/<org>/<name>/."""
    tree = engine.dag.directory()
    for path, (text, mode) in sorted(plan.files.items()):
        tree = tree.with_new_file(f"{plan.identity.apk_dir}/{path}", text, permissions=mode)
    return tree


@dataclass
class Built:
    """What the build containers made: the packages of every platform, signed by each
    container's throwaway key, and those keys' public halves, by key name."""

    packages: dagger.Directory
    throwaway: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Build:
    """One build of every platform: what each made, or how it failed."""

    plan: bootstrap.Plan
    branch: str
    arches: dict[dagger.Platform, str]
    workspace: dagger.Directory  # the source, less what the build snapshot leaves out
    rendered: dagger.Directory
    outputs: dict[dagger.Platform, dagger.Directory] = field(default_factory=dict)
    throwaway: dict[str, bytes] = field(default_factory=dict)
    failures: dict[dagger.Platform, str] = field(default_factory=dict)

    async def one(self, platform: dagger.Platform) -> None:
        """Build one platform. Every failure is reported as a step's, and never escapes:
        an exception leaving the task group would cancel the other platforms and reach
        the caller as a bare "unhandled errors in a TaskGroup"."""
        identity = self.plan.identity
        steps = recipes.build(identity, identity.source_date_epoch, self.arches[platform])
        known = recipes.builder(self.branch, str(platform)).root_steps + steps.steps
        step_name = recipes.SETUP_STEP
        try:
            # Synced on its own: the SDK sends nothing until a sync, and a failed pull
            # or apk add would otherwise surface at the first abuild step.
            ctr = await builder(self.branch, platform).sync()
            step_name = "prepare the workspace"
            ctr = ctr.with_directory(
                recipes.WORKSPACE, self.workspace, owner=recipes.BUILDER
            ).with_directory(recipes.WORKSPACE, self.rendered, owner=recipes.BUILDER)
            for path, text in steps.files.items():
                ctr = ctr.with_new_file(path, text, owner=recipes.BUILDER)
            for name, value in steps.env.items():
                ctr = ctr.with_env_variable(name, value)
            ctr = ctr.with_workdir(steps.workdir)
            for step in steps.steps:
                step_name = step.name
                ctr = await ctr.with_exec(list(step.args)).sync()
            step_name = recipes.OUTPUT_STEP
            self.outputs[platform] = await ctr.directory(steps.output).sync()
            public = await ctr.file(steps.signing.throwaway).contents()
            self.throwaway[Path(steps.signing.throwaway).name] = public.encode()
        except dagger.ExecError as error:
            # The exec that failed, which laziness may have left to a later sync.
            output = f"{error.stdout}\n{error.stderr}"
            failed = recipes.step_name(error.command, known)
            self.failures[platform] = recipes.failure_message(
                platform, failed, error.exit_code, output
            )
        except Exception as error:  # the image, a mount, the engine itself
            detail = f"{type(error).__name__}: {error}"
            self.failures[platform] = recipes.failure_message(platform, step_name, -1, detail)


async def build(
    plan: bootstrap.Plan,
    branch: str,
    source: dagger.Directory,
    arches: dict[dagger.Platform, str],
) -> Built:
    """Build every platform (``arches``: its Alpine arch) concurrently in keyless
    containers: abuild signs with a key made in each. Refused with every platform's
    failure, in platform order."""
    workspace = source.filter(exclude=list(recipes.SNAPSHOT_EXCLUDE))
    run = _Build(plan, branch, arches, workspace, rendered(plan))
    platforms = list(arches)
    async with anyio.create_task_group() as group:
        for platform in platforms:
            group.start_soon(run.one, platform)
    if run.failures:
        raise PakmanError("\n\n".join(run.failures[p] for p in platforms if p in run.failures))
    merged = engine.dag.directory()
    for platform in platforms:
        merged = merged.with_directory(".", run.outputs[platform])
    return Built(merged, run.throwaway)
