"""PAKman as a Dagger module: signed Alpine packages from instellar.yml, shipped to S3.

A thin shell. Every decision (config, rendering, the container recipe, verification,
merge, publish, deploy) is made by the ``pakman`` library; the pipeline steps are the
very functions the ``pakman`` CLI calls (:mod:`pakman.pipeline`). This module only turns
their results into container operations and moves bytes between the engine and them.
"""

import contextlib
import dataclasses
import functools
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar, overload

import anyio
import dagger
from dagger import DefaultPath, Doc, Ignore, dag, enum_type, function, object_type
from dagger.mod._exceptions import FunctionError  # not re-exported; the SDK's own class

from pakman import bootstrap, keys, pipeline, sign
from pakman import config as config_module
from pakman import recipe as recipes  # the module has its own function named recipe
from pakman.errors import PakmanError
from pakman.identity import GitFacts, Identity, git_probe, read_git_probe, resolve_alpine
from pakman.merge import ARCHIVE_NAME
from pakman.publish.deployment import Deployment
from pakman.publish.instellar import DEFAULT_ENDPOINT, InstellarOptions
from pakman.storage.options import DEFAULT_CONCURRENCY, AddressingStyle, StoreOptions
from pakman.tree import files as package_files
from pakman.trust import Trust, trust_pem

Source = Annotated[
    dagger.Directory,
    DefaultPath("/"),
    Ignore(list(recipes.SOURCE_IGNORE)),
    Doc(
        "The application repository, with instellar.yml. Pass --source . when calling the"
        " module remotely (-m github.com/...): the default is the module's own repository"
    ),
]
AMD64 = dagger.Platform("linux/amd64")
Repository = Annotated[str, Doc("The GitHub repository, owner/name: it names the package")]
Version = Annotated[str, Doc("Package version (default: git describe --tags of the source)")]
BuildNumber = Annotated[int, Doc("Build number, the package's pkgrel")]
Packages = Annotated[dagger.Directory, Doc("Packages tree from build: <org>/<arch>/*.apk")]
PublicKey = Annotated[dagger.Secret, Doc("The abuild public key (PEM), e.g. env:ABUILD_PUBLIC_KEY")]
OptionalPublicKey = Annotated[
    dagger.Secret | None,
    Doc("Verify every package against this public key first (required unless skip-verify)"),
]
SkipVerify = Annotated[bool, Doc("Ship without verifying against a public key (not advised)")]
Archive = Annotated[
    dagger.File | None, Doc("The packages.zip from merge (default: made from the packages)")
]
Sha = Annotated[str, Doc("The commit sha the packages were built from")]
Ref = Annotated[str, Doc("The git ref, e.g. refs/heads/main")]
Concurrency = Annotated[int, Doc("Parallel uploads")]
Endpoint = Annotated[str, Doc("S3-compatible endpoint URL (default: AWS)")]
Region = Annotated[str, Doc("S3 region (default: us-east-1)")]
Addressing = Annotated[AddressingStyle, Doc("S3 addressing style")]
VerifyTls = Annotated[bool, Doc("Verify the endpoint's TLS certificate")]
CreateBucket = Annotated[bool, Doc("Create the bucket if it is missing")]
AccessKeyId = Annotated[dagger.Secret, Doc("S3 access key id, e.g. env:AWS_ACCESS_KEY_ID")]
SecretAccessKey = Annotated[
    dagger.Secret, Doc("S3 secret access key, e.g. env:AWS_SECRET_ACCESS_KEY")
]
Timeout = Annotated[int, Doc("Give up after this many seconds; a re-run resumes")]


# The library's enum, registered with the engine: one definition for the CLI and the module.
enum_type(AddressingStyle)


_F = TypeVar("_F", bound=Callable[..., Any])
# Functions that talk to the outside world, or must make something new each call, run
# every time. The typed overloads of `function` do not list `cache`; the runtime does.
uncached: Callable[[_F], _F] = function(cache="never")  # type: ignore[call-overload]


class PakmanFailure(FunctionError):
    """A failure reported to the caller as one clear message.

    The SDK re-raises a ``FunctionError`` as it is; any other exception it logs with its
    whole traceback into the function's output first.
    """


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Library errors reach the caller as their one-line messages, without a traceback."""
    try:
        yield
    except PakmanError as error:
        raise PakmanFailure("\n".join(error.problems)) from None


def _filtered(source: dagger.Directory) -> dagger.Directory:
    """The source without what the module leaves out. The engine applies ``Ignore`` only
    to a local upload by the CLI, not to a directory passed by a module or from git; and a
    filtered snapshot is keyed by its contents, so what it leaves out changes no key."""
    return source.filter(exclude=list(recipes.SOURCE_IGNORE))


async def _export(directory: dagger.Directory, path: Path) -> Path:
    await directory.export(str(path))
    return path


@contextlib.asynccontextmanager
async def _inputs(
    packages: dagger.Directory, archive: dagger.File | None
) -> AsyncIterator[tuple[Path, Path | None]]:
    """The packages tree, and the archive when one is given, exported to this runtime."""
    with tempfile.TemporaryDirectory(prefix="pakman-") as tmp:
        tree = await _export(packages, Path(tmp) / "packages")
        zip_path = None
        if archive is not None:
            zip_path = Path(tmp) / ARCHIVE_NAME
            await archive.export(str(zip_path))
        yield tree, zip_path


_R = TypeVar("_R")


async def _in_thread(step: Callable[[], _R]) -> _R:
    """A blocking pipeline step, off the event loop, its errors as one-line failures."""

    def run() -> _R:
        with _reported():
            return step()

    return await anyio.to_thread.run_sync(run)


async def _trust(public_key: dagger.Secret | None, identity: Identity, skip_verify: bool) -> Trust:
    pem = (await public_key.plaintext()).encode() if public_key is not None else None
    return trust_pem(pem, identity, skip=skip_verify)


async def _store_options(
    bucket: str,
    options: tuple[str, str, AddressingStyle, bool, bool],
    credentials: tuple[dagger.Secret, dagger.Secret],
    concurrency: int = DEFAULT_CONCURRENCY,
) -> StoreOptions:
    """The bucket options publish and repo share: (endpoint, region, addressing style,
    verify TLS, create the bucket), with the credentials read from their Secrets."""
    endpoint, region, addressing_style, verify_tls, create_bucket = options
    access_key_id, secret_access_key = credentials
    access, secret = await access_key_id.plaintext(), await secret_access_key.plaintext()
    with _reported():
        return StoreOptions.resolve(
            {},  # the engine's environment is not the caller's
            bucket=bucket,
            endpoint=endpoint,
            region=region,
            addressing_style=addressing_style,
            verify_tls=verify_tls,
            concurrency=concurrency,
            create_bucket=create_bucket,
            access_key_id=access,
            secret_access_key=secret,
        )


@object_type
class Pakman:
    """Build signed Alpine packages from instellar.yml and ship them to S3-compatible storage."""

    alpine: Annotated[
        str, Doc("Alpine version: 3.20, v3.20, edge or latest-stable (default: the config's stack)")
    ] = ""
    config: Annotated[str, Doc("Path of instellar.yml inside the source")] = "instellar.yml"

    # --- helpers: fold the library's recipes into containers ------------------------

    @overload
    async def _read_config(self, source: dagger.Directory) -> config_module.Config: ...

    @overload
    async def _read_config(
        self, source: dagger.Directory, *, missing_ok: bool
    ) -> config_module.Config | None: ...

    async def _read_config(
        self, source: dagger.Directory, *, missing_ok: bool = False
    ) -> config_module.Config | None:
        try:
            text = await source.file(self.config).contents()
        except dagger.QueryError:
            if missing_ok:
                return None
            raise PakmanFailure(f"{self.config}: no such file in the source") from None
        with _reported():
            return config_module.parse(text, Path(self.config).name)

    def _branch(self, cfg: config_module.Config | None) -> str:
        with _reported():
            return resolve_alpine(self.alpine, cfg.alpine_version if cfg else None)

    async def _git(self, source: dagger.Directory) -> GitFacts:
        """Version, commit time and commit of the source, read as the CLI reads them."""
        out = await (
            dag.container()
            .from_(recipes.TOOLS_IMAGE)
            .with_exec(["apk", "add", "--no-cache", "git"])
            .with_directory("/src", source)
            .with_exec(["sh", "-c", git_probe("/src")])
            .stdout()
        )
        return read_git_probe(out)

    async def _plan(
        self, source: dagger.Directory, repository: str, version: str, build_number: int
    ) -> bootstrap.Plan:
        cfg = await self._read_config(source)
        facts = await self._git(source)
        entries = set(await source.entries())
        with _reported():
            plan = bootstrap.plan(
                cfg, repository, version or facts.version, build_number, facts.epoch, facts.commit
            )
            bootstrap.check_workspace(cfg, plan.identity, lambda name: name in entries)
        return plan

    def _container(self, branch: str, platform: dagger.Platform) -> dagger.Container:
        with _reported():
            r = recipes.builder(branch, str(platform))
        ctr = dag.container(platform=platform).from_(r.image)

        def mount(ctr: dagger.Container, cache: recipes.Cache) -> dagger.Container:
            sharing = (
                dagger.CacheSharingMode.LOCKED if cache.locked else dagger.CacheSharingMode.SHARED
            )
            return ctr.with_mounted_cache(
                cache.path, dag.cache_volume(cache.key), sharing=sharing, owner=cache.owner
            )

        setup = [cache for cache in r.caches if cache.setup_only]
        for cache in setup:
            ctr = mount(ctr, cache)
        for step in r.root_steps:
            ctr = ctr.with_exec(list(step.args))
        for cache in setup:  # its lock is released with the root steps' last exec
            ctr = ctr.without_mount(cache.path)
        for cache in r.caches:
            if not cache.setup_only:  # after the build user and its directories exist
                ctr = mount(ctr, cache)
        return ctr.with_user(r.user).with_workdir(r.workdir)

    @staticmethod
    def _tree(plan: bootstrap.Plan) -> dagger.Directory:
        tree = dag.directory()
        for path, (text, mode) in sorted(plan.files.items()):
            tree = tree.with_new_file(f"{plan.identity.apk_dir}/{path}", text, permissions=mode)
        return tree

    # --- the pipeline ------------------------------------------------------------------

    @function
    async def builder(
        self,
        source: Source,
        platform: Annotated[
            dagger.Platform, Doc("Platform, e.g. linux/amd64 or linux/arm64")
        ] = AMD64,
    ) -> dagger.Container:
        """The Alpine build container, with alpine-sdk, a builder user and caches."""
        try:
            cfg: config_module.Config | None = await self._read_config(source)
        except PakmanFailure:
            cfg = None
        return self._container(self._branch(cfg), platform)

    @function
    def recipe(
        self,
        platform: Annotated[dagger.Platform, Doc("Platform, e.g. linux/arm64")] = AMD64,
        stack: Annotated[str, Doc("The config's stack version, e.g. 3.19")] = "",
    ) -> str:
        """The build container's recipe as JSON: image, packages, user, caches."""
        with _reported():
            r = recipes.builder(resolve_alpine(self.alpine, stack or None), str(platform))
        return json.dumps(dataclasses.asdict(r), indent=2)

    @function
    async def bootstrap(
        self,
        source: Source,
        repository: Repository,
        version: Version = "",
        build_number: BuildNumber = 0,
    ) -> dagger.Changeset:
        """Render the APKBUILD and service files into .apk/<org>/<name>/, as a changeset.

        dagger applies a returned changeset to the folder it runs in, not to --source:
        call it from the application's root with --source .
        """
        plan = await self._plan(_filtered(source), repository, version, build_number)
        # Against the source as given: a re-render of unchanged files changes nothing.
        return source.with_directory(".", self._tree(plan)).changes(source)

    @function
    async def build(
        self,
        source: Source,
        repository: Repository,
        private_key: Annotated[
            dagger.Secret,
            Doc(
                "The abuild private key (PEM), e.g. env:ABUILD_PRIVATE_KEY: used by pakman's"
                " own code only, never in the build container"
            ),
        ],
        public_key: PublicKey,
        platforms: Annotated[
            list[dagger.Platform],
            Doc("Platforms to build, all at once, e.g. linux/amd64,linux/arm64"),
        ] = [AMD64],  # noqa: B006 - dagger reads the default from the signature
        version: Version = "",
        build_number: BuildNumber = 0,
    ) -> dagger.Directory:
        """Build the packages for every platform concurrently, then sign them: <org>/<arch>/...

        The build container gets no key: abuild signs with a throwaway key made there, and
        the packages and indexes are then re-signed with the real key by pakman itself, in
        the module's runtime, where nothing of the application runs.
        """
        source = _filtered(source)
        plan = await self._plan(source, repository, version, build_number)
        with _reported():
            recipes.check_platforms(plan.config.architectures, [str(p) for p in platforms])
            arches = {p: recipes.alpine_arch(str(p)) for p in platforms}
        branch = self._branch(plan.config)
        epoch = plan.identity.source_date_epoch
        workspace = source.filter(exclude=list(recipes.SNAPSHOT_EXCLUDE))
        rendered = self._tree(plan)
        outputs: dict[str, dagger.Directory] = {}
        throwaway: dict[str, bytes] = {}  # the build keys' public halves, by key name
        failures: dict[dagger.Platform, str] = {}

        async def one(platform: dagger.Platform) -> None:
            # Every failure of this platform is reported as a step's, and never escapes:
            # an exception leaving the task group would cancel the other platforms and
            # reach the caller as a bare "unhandled errors in a TaskGroup".
            steps = recipes.build(plan.identity, epoch, arches[platform])
            known = recipes.builder(branch, str(platform)).root_steps + steps.steps
            step_name = recipes.SETUP_STEP
            try:
                # Synced on its own: the SDK sends nothing until a sync, and a failed pull
                # or apk add would otherwise surface at the first abuild step.
                ctr = await self._container(branch, platform).sync()
                step_name = "prepare the workspace"
                ctr = ctr.with_directory(
                    recipes.WORKSPACE, workspace, owner=recipes.BUILDER
                ).with_directory(recipes.WORKSPACE, rendered, owner=recipes.BUILDER)
                for path, text in steps.files.items():
                    ctr = ctr.with_new_file(path, text, owner=recipes.BUILDER)
                for name, value in steps.env.items():
                    ctr = ctr.with_env_variable(name, value)
                ctr = ctr.with_workdir(steps.workdir)
                for step in steps.steps:
                    step_name = step.name
                    ctr = await ctr.with_exec(list(step.args)).sync()
                step_name = recipes.OUTPUT_STEP
                outputs[platform] = await ctr.directory(steps.output).sync()
                public = await ctr.file(steps.signing.throwaway).contents()
                throwaway[Path(steps.signing.throwaway).name] = public.encode()
            except dagger.ExecError as error:
                # The exec that failed, which laziness may have left to a later sync.
                output = f"{error.stdout}\n{error.stderr}"
                failed = recipes.step_name(error.command, known)
                failures[platform] = recipes.failure_message(
                    platform, failed, error.exit_code, output
                )
            except Exception as error:  # the image, a mount, the engine itself
                detail = f"{type(error).__name__}: {error}"
                failures[platform] = recipes.failure_message(platform, step_name, -1, detail)

        async with anyio.create_task_group() as group:
            for platform in platforms:
                group.start_soon(one, platform)
        if failures:
            raise PakmanFailure("\n\n".join(failures[p] for p in platforms if p in failures))
        merged = dag.directory()
        for platform in platforms:
            merged = merged.with_directory(".", outputs[platform])
        return await self._sign(merged, plan.identity, private_key, public_key, throwaway)

    async def _sign(
        self,
        built: dagger.Directory,
        identity: Identity,
        private_key: dagger.Secret,
        public_key: dagger.Secret,
        throwaway: dict[str, bytes],
    ) -> dagger.Directory:
        """Re-sign what abuild signed with its throwaway keys, here in the module's runtime,
        then verify it with the real public key; handed back from the working folder."""
        folder = Path(tempfile.mkdtemp(prefix="packages-", dir="."))
        await built.export(str(folder))
        private_pem = (await private_key.plaintext()).encode()
        trust = await _trust(public_key, identity, skip_verify=False)

        def sign_and_verify() -> None:
            sign.sign_tree(
                folder,
                private_pem,
                f"{identity.key_name}.pub",
                expect=throwaway,
                what="private-key",
            )
            pipeline.verify(folder, package_files(folder), trust, "build")

        await _in_thread(sign_and_verify)
        return await dag.current_module().workdir(folder.name).sync()

    @function
    async def merge(
        self,
        packages: Annotated[
            dagger.Directory,
            Doc("Per-arch outputs: abuild's <org>/<arch>/ or downloaded artifacts"),
        ],
        repository: Repository,
        public_key: OptionalPublicKey = None,
        skip_verify: SkipVerify = False,
    ) -> dagger.File:
        """Verify and merge per-arch packages into one deterministic packages.zip."""
        with tempfile.TemporaryDirectory(prefix="pakman-merge-") as tmp:
            tree = await _export(packages, Path(tmp) / "packages")
            with _reported():
                identity = Identity(repository)
            trust = await _trust(public_key, identity, skip_verify)
            output = Path("packages.zip").resolve()  # the module's workdir, handed back below
            with _reported():
                pipeline.merge([tree], output, trust)
        return dag.current_module().workdir_file("packages.zip")

    @uncached
    async def publish(
        self,
        packages: Packages,
        repository: Repository,
        sha: Sha,
        bucket: Annotated[str, Doc("S3 bucket")],
        access_key_id: AccessKeyId,
        secret_access_key: SecretAccessKey,
        public_key: OptionalPublicKey = None,
        skip_verify: SkipVerify = False,
        archive: Archive = None,
        ref: Ref = "",
        build_number: BuildNumber = 0,
        endpoint: Endpoint = "",
        region: Region = "",
        addressing_style: Addressing = AddressingStyle.AUTO,
        verify_tls: VerifyTls = True,
        concurrency: Concurrency = DEFAULT_CONCURRENCY,
        create_bucket: CreateBucket = False,
        dry_run: Annotated[bool, Doc("Print the plan; read storage, write nothing")] = False,
        timeout: Timeout = pipeline.DEFAULT_TIMEOUT,
    ) -> str:
        """Verify, then upload packages and archive to S3, manifest last; safe to re-run."""
        with _reported():
            target = Deployment.resolve(repository, sha, ref, build_number)
        store = await _store_options(
            bucket,
            (endpoint, region, addressing_style, verify_tls, create_bucket),
            (access_key_id, secret_access_key),
            concurrency,
        )
        trust = await _trust(public_key, target.identity, skip_verify)
        async with _inputs(packages, archive) as (tree, zip_path):
            summary = await _in_thread(
                functools.partial(
                    pipeline.publish,
                    tree,
                    zip_path,
                    target,
                    trust,
                    store,
                    dry_run=dry_run,
                    timeout=timeout,
                )
            )
        return json.dumps(summary.as_dict(), indent=2)

    @uncached
    async def deploy(
        self,
        source: Source,
        packages: Packages,
        repository: Repository,
        sha: Sha,
        public_key: PublicKey,
        instellar_auth_token: Annotated[
            dagger.Secret, Doc("OpsMaru/Instellar auth token, e.g. env:INSTELLAR_AUTH_TOKEN")
        ],
        instellar_package_token: Annotated[
            dagger.Secret, Doc("Instellar package token, e.g. env:INSTELLAR_PACKAGE_TOKEN")
        ],
        archive: Archive = None,
        ref: Ref = "",
        build_number: BuildNumber = 0,
        instellar_endpoint: Annotated[str, Doc("The deployment API")] = DEFAULT_ENDPOINT,
        concurrency: Concurrency = DEFAULT_CONCURRENCY,
        timeout: Timeout = pipeline.DEFAULT_TIMEOUT,
    ) -> str:
        """Verify, upload and register the deployment with OpsMaru/Instellar (v8's push)."""
        cfg = await self._read_config(source)
        with _reported():
            target = Deployment.resolve(repository, sha, ref, build_number)
            instellar = InstellarOptions.resolve(
                {},
                auth_token=await instellar_auth_token.plaintext(),
                package_token=await instellar_package_token.plaintext(),
                endpoint=instellar_endpoint,
            )
        trust = await _trust(public_key, target.identity, skip_verify=False)
        async with _inputs(packages, archive) as (tree, zip_path):
            pushed = await _in_thread(
                functools.partial(
                    pipeline.push,
                    tree,
                    zip_path,
                    target,
                    trust,
                    cfg,
                    instellar,
                    concurrency=concurrency,
                    timeout=timeout,
                )
            )
        return json.dumps(pushed.as_dict(), indent=2)

    @uncached
    async def repo(
        self,
        packages: Packages,
        repository: Repository,
        public_key: PublicKey,
        private_key: Annotated[
            dagger.Secret, Doc("The abuild private key (PEM) that signs the index")
        ],
        bucket: Annotated[str, Doc("S3 bucket holding the repository")],
        access_key_id: AccessKeyId,
        secret_access_key: SecretAccessKey,
        source: Annotated[
            dagger.Directory,
            DefaultPath("/"),
            Ignore(list(recipes.CONFIG_ONLY)),
            Doc(
                "The application repository, whose config's stack names the branch (only its"
                " YAML files are read). Pass --source . when calling the module remotely"
            ),
        ],
        endpoint: Endpoint = "",
        region: Region = "",
        addressing_style: Addressing = AddressingStyle.AUTO,
        verify_tls: VerifyTls = True,
        create_bucket: CreateBucket = False,
        prefix: Annotated[str, Doc("Folder of the repository in the bucket")] = "alpine",
        keep: Annotated[int, Doc("Newest versions kept per package name")] = 5,
        replace: Annotated[bool, Doc("Replace a version already there with other bytes")] = False,
        dry_run: Annotated[bool, Doc("Print what would change; write nothing")] = False,
        timeout: Timeout = pipeline.DEFAULT_TIMEOUT,
        branch: Annotated[
            str,
            Doc("Alpine branch, e.g. v3.23 (default: --alpine, else the stack of --source)"),
        ] = "",
    ) -> str:
        """Verify, then add packages to a signed apk repository in the bucket (apk add/upgrade)."""
        with _reported():
            identity = Identity(repository)
        # As the CLI: the config's stack when there is a config; a broken one is refused.
        cfg = None if branch or self.alpine else await self._read_config(source, missing_ok=True)
        with _reported():
            branch = resolve_alpine(
                branch or self.alpine, cfg.alpine_version if cfg else None, option="branch"
            )
        store = await _store_options(
            bucket,
            (endpoint, region, addressing_style, verify_tls, create_bucket),
            (access_key_id, secret_access_key),
        )
        private_pem = (await private_key.plaintext()).encode()
        with tempfile.TemporaryDirectory(prefix="pakman-repo-") as tmp:
            tree = await _export(packages, Path(tmp) / "packages")
            # The public key under the name abuild signs with, as hosts will trust it.
            trust = trust_pem((await public_key.plaintext()).encode(), identity)
            summary = await _in_thread(
                functools.partial(
                    pipeline.repo,
                    [tree],
                    trust,
                    private_pem,
                    store,
                    branch=branch,
                    prefix=prefix,
                    keep=keep,
                    replace=replace,
                    dry_run=dry_run,
                    timeout=timeout,
                )
            )
        return json.dumps(summary.as_dict(), indent=2)

    @uncached
    async def keygen(self, repository: Repository) -> dagger.Directory:
        """A new 4096-bit signing key pair, named <org>-<slug>.rsa and .rsa.pub."""
        with _reported():
            name = Identity(repository).key_name
        pair = keys.generate()
        # Written in the module's working folder and handed back from there: a key passed
        # as a call argument (with_new_file's contents) is sent verbatim to telemetry.
        folder = Path(tempfile.mkdtemp(prefix="keygen-", dir="."))
        private = folder / name
        private.touch(mode=0o600)
        private.write_bytes(pair.private_pem)
        (folder / f"{name}.pub").write_bytes(pair.public_pem)
        (folder / f"{name}.pub").chmod(0o644)
        return await dag.current_module().workdir(folder.name).sync()

    @function
    async def check(self, source: Source) -> str:
        """Validate instellar.yml and report every problem."""
        return pipeline.check_summary(await self._read_config(source), self.config)
