"""PAKman as a Dagger module: signed Alpine packages from instellar.yml, shipped to S3.

A thin shell. Every decision (config, rendering, the container recipe, verify,
merge, publish) is made by the ``pakman`` library; this module only turns those
results into container operations and moves bytes between the engine and the library.
"""

import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import dagger
from dagger import DefaultPath, Doc, Ignore, dag, function, object_type
from dagger import check as dagger_check  # the module has its own function named check

from pakman import bootstrap, keys
from pakman import config as config_module
from pakman import deploy as deploy_module
from pakman import merge as merge_module
from pakman import publish as publish_module
from pakman import recipe as recipes  # the module has its own function named recipe
from pakman.errors import PakmanError
from pakman.identity import Identity, resolve_alpine, version_from_describe
from pakman.instellar import DEFAULT_ENDPOINT, Client
from pakman.store import open_store
from pakman.verify import trusted_keys, verify_tree

SOURCE_IGNORE = ["node_modules", ".apk", "packages", "packages.zip", "**/__pycache__", ".venv"]

Source = Annotated[
    dagger.Directory,
    DefaultPath("/"),
    Ignore(SOURCE_IGNORE),
    Doc("The application repository, with instellar.yml (default: this git repository)"),
]
Repository = Annotated[str, Doc("The GitHub repository, owner/name: it names the package")]
Version = Annotated[str, Doc("Package version (default: git describe --tags of the source)")]
BuildNumber = Annotated[int, Doc("Build number, the package's pkgrel")]
Packages = Annotated[dagger.Directory, Doc("Packages tree from build: <org>/<arch>/*.apk")]
PublicKey = Annotated[dagger.Secret, Doc("The abuild public key (PEM), e.g. env:ABUILD_PUBLIC_KEY")]


Shipper = Callable[[Path, Path, publish_module.Deployment], str]
_F = TypeVar("_F", bound=Callable[..., Any])
# Functions that talk to the outside world must run every time, or a retry is served
# from cache. The typed overloads of `function` do not list `cache`; the runtime does.
uncached: Callable[[_F], _F] = function(cache="never")  # type: ignore[call-overload]


class PakmanFailure(Exception):
    """A failure reported to the caller as one clear message."""


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Library errors reach the caller as their one-line messages, without a traceback."""
    try:
        yield
    except PakmanError as error:
        raise PakmanFailure("\n".join(error.problems)) from None


@object_type
class Pakman:
    """Build signed Alpine packages from instellar.yml and ship them to S3-compatible storage."""

    alpine: Annotated[
        str, Doc("Alpine version: 3.20, v3.20, edge or latest-stable (default: the config's stack)")
    ] = ""
    config: Annotated[str, Doc("Path of instellar.yml inside the source")] = "instellar.yml"

    # --- helpers: fold the library's recipes into containers ------------------------

    async def _read_config(self, source: dagger.Directory) -> config_module.Config:
        try:
            text = await source.file(self.config).contents()
        except dagger.QueryError:
            raise PakmanFailure(f"{self.config}: no such file in the source") from None
        with _reported():
            return config_module.parse(text, Path(self.config).name)

    def _branch(self, cfg: config_module.Config | None) -> str:
        with _reported():
            return resolve_alpine(self.alpine, cfg.alpine_version if cfg else None)

    async def _git(self, source: dagger.Directory) -> tuple[str, int | None]:
        """``git describe`` and the HEAD commit time, run in a small container."""
        script = (
            "git config --global --add safe.directory /src; "
            "git -C /src describe --tags --always 2>/dev/null || true; echo; "
            "git -C /src log -1 --format=%ct 2>/dev/null || true"
        )
        out = await (
            dag.container()
            .from_("alpine:latest")
            .with_exec(["apk", "add", "--no-cache", "git"])
            .with_directory("/src", source)
            .with_exec(["sh", "-c", script])
            .stdout()
        )
        lines = [line.strip() for line in out.splitlines()]
        described = lines[0] if lines else ""
        epoch = next((int(line) for line in lines[1:] if line.isdigit()), None)
        return version_from_describe(described), epoch

    async def _plan(
        self, source: dagger.Directory, repository: str, version: str, build_number: int
    ) -> bootstrap.Plan:
        cfg = await self._read_config(source)
        described, epoch = await self._git(source)
        with _reported():
            return bootstrap.plan(cfg, repository, version or described, build_number, epoch)

    def _container(self, branch: str, platform: str) -> dagger.Container:
        with _reported():
            r = recipes.builder(branch, platform)
        ctr = dag.container(platform=dagger.Platform(r.platform)).from_(r.image)

        def mount(ctr: dagger.Container, cache: recipes.Cache) -> dagger.Container:
            sharing = (
                dagger.CacheSharingMode.LOCKED if cache.locked else dagger.CacheSharingMode.SHARED
            )
            return ctr.with_mounted_cache(
                cache.path, dag.cache_volume(cache.key), sharing=sharing, owner=cache.owner
            )

        for cache in r.caches:
            if not cache.owner:
                ctr = mount(ctr, cache)
        for step in r.root_steps:
            ctr = ctr.with_exec(list(step.args))
        for cache in r.caches:
            if cache.owner:  # after the build user exists
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
            str, Doc("Docker platform, e.g. linux/amd64 or linux/arm64")
        ] = "linux/amd64",
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
        platform: Annotated[str, Doc("Docker platform, e.g. linux/arm64")] = "linux/amd64",
        stack: Annotated[str, Doc("The config's stack version, e.g. 3.19")] = "",
    ) -> str:
        """The build container's recipe as JSON: image, packages, user, caches."""
        with _reported():
            r = recipes.builder(resolve_alpine(self.alpine, stack or None), platform)
        return json.dumps(dataclasses.asdict(r), indent=2)

    @function
    async def bootstrap(
        self,
        source: Source,
        repository: Repository,
        version: Version = "",
        build_number: BuildNumber = 0,
    ) -> dagger.Directory:
        """Render the APKBUILD and service files into .apk/<org>/<name>/."""
        return self._tree(await self._plan(source, repository, version, build_number))

    @function
    async def build(
        self,
        source: Source,
        repository: Repository,
        private_key: Annotated[
            dagger.Secret, Doc("The abuild private key (PEM), e.g. env:ABUILD_PRIVATE_KEY")
        ],
        public_key: PublicKey,
        platforms: Annotated[
            list[str], Doc("Platforms to build, all at once, e.g. linux/amd64 linux/arm64")
        ] = ["linux/amd64"],  # noqa: B006 - dagger reads the default from the signature
        version: Version = "",
        build_number: BuildNumber = 0,
    ) -> dagger.Directory:
        """Build and sign the packages for every platform concurrently: <org>/<arch>/..."""
        return await self._build(
            source, repository, private_key, public_key, platforms, version, build_number
        )

    async def _build(
        self,
        source: dagger.Directory,
        repository: str,
        private_key: dagger.Secret,
        public_key: dagger.Secret,
        platforms: list[str],
        version: str,
        build_number: int,
    ) -> dagger.Directory:
        plan = await self._plan(source, repository, version, build_number)
        with _reported():
            recipes.check_platforms(plan.config.architectures, platforms)
        branch = self._branch(plan.config)
        steps = recipes.build(plan.identity, plan.identity.source_date_epoch)
        tree = self._tree(plan)
        secrets = {"private_key": private_key, "public_key": public_key}
        outputs: dict[str, dagger.Directory] = {}
        failures: list[str] = []

        async def one(platform: str) -> None:
            ctr = (
                self._container(branch, platform)
                .with_directory(recipes.WORKSPACE, source, owner=recipes.BUILDER)
                .with_directory(recipes.WORKSPACE, tree, owner=recipes.BUILDER)
            )
            for mount in steps.secrets:
                ctr = ctr.with_mounted_secret(
                    mount.path, secrets[mount.secret], owner=mount.owner, mode=mount.mode
                )
            for path, text in steps.files.items():
                ctr = ctr.with_new_file(path, text, owner=recipes.BUILDER)
            for name, value in steps.env.items():
                ctr = ctr.with_env_variable(name, value)
            ctr = ctr.with_workdir(steps.workdir)
            for step in steps.steps:
                try:
                    ctr = await ctr.with_exec(list(step.args)).sync()
                except dagger.ExecError as error:
                    output = f"{error.stdout}\n{error.stderr}"
                    failures.append(
                        recipes.failure_message(platform, step.name, error.exit_code, output)
                    )
                    return
            outputs[platform] = await ctr.directory(steps.output).sync()

        async with anyio.create_task_group() as group:
            for platform in platforms:
                group.start_soon(one, platform)
        if failures:
            raise PakmanFailure("\n\n".join(failures))
        merged = dag.directory()
        for platform in platforms:
            merged = merged.with_directory(".", outputs[platform])
        return merged

    @function
    async def merge(self, packages: Packages) -> dagger.File:
        """Merge per-arch packages into one deterministic packages.zip."""
        with tempfile.TemporaryDirectory(prefix="pakman-merge-") as tmp:
            await packages.export(tmp)
            with _reported():
                merged = merge_module.collect([Path(tmp)])
                merge_module.write_zip(merged, Path("packages.zip"))
        return dag.current_module().workdir_file("packages.zip")

    async def _publish(
        self,
        packages: dagger.Directory,
        deployment: publish_module.Deployment,
        public_key: dagger.Secret | None,
        ship: Shipper,
    ) -> str:
        """Export, verify, merge, then hand the files to ``ship``; returns its JSON summary."""
        with tempfile.TemporaryDirectory(prefix="pakman-publish-") as tmp:
            tree = Path(tmp) / "packages"
            await packages.export(str(tree))
            with _reported():
                if public_key is not None:
                    pem = (await public_key.plaintext()).encode()
                    # Trusted under the name abuild signed with: <org>-<slug>.rsa.pub.
                    trusted = trusted_keys({f"{deployment.identity.key_name}.pub": pem})
                    report = verify_tree(tree, trusted)
                    if not report.ok:
                        raise PakmanFailure("\n".join(map(str, report.problems)))
                    fingerprint = "sha256:" + keys.fingerprint(pem)
                    deployment = dataclasses.replace(deployment, key_fingerprint=fingerprint)
                archive = Path(tmp) / "packages.zip"
                merge_module.write_zip(merge_module.collect([tree]), archive)
                return await anyio.to_thread.run_sync(ship, tree, archive, deployment)

    @uncached
    async def publish(
        self,
        packages: Packages,
        repository: Repository,
        sha: Annotated[str, Doc("The commit sha the packages were built from")],
        bucket: Annotated[str, Doc("S3 bucket")],
        access_key_id: Annotated[
            dagger.Secret, Doc("S3 access key id, e.g. env:AWS_ACCESS_KEY_ID")
        ],
        secret_access_key: Annotated[
            dagger.Secret, Doc("S3 secret access key, e.g. env:AWS_SECRET_ACCESS_KEY")
        ],
        public_key: Annotated[
            dagger.Secret | None, Doc("Verify every package against this public key first")
        ] = None,
        ref: Annotated[str, Doc("The git ref, e.g. refs/heads/main")] = "",
        build_number: BuildNumber = 0,
        endpoint: Annotated[str, Doc("S3-compatible endpoint URL (default: AWS)")] = "",
        region: Annotated[str, Doc("S3 region")] = "us-east-1",
        addressing_style: Annotated[str, Doc("S3 addressing: auto, path or virtual")] = "auto",
        verify_tls: Annotated[bool, Doc("Verify the endpoint's TLS certificate")] = True,
        concurrency: Annotated[int, Doc("Parallel uploads")] = 8,
        create_bucket: Annotated[bool, Doc("Create the bucket if it is missing")] = False,
        dry_run: Annotated[bool, Doc("Print the plan; read storage, write nothing")] = False,
    ) -> str:
        """Upload packages and archive to S3, manifest last; safe to re-run. Returns JSON."""
        with _reported():
            store = open_store(
                None,
                bucket,
                endpoint=endpoint or None,
                region=region,
                access_key_id=await access_key_id.plaintext(),
                secret_access_key=await secret_access_key.plaintext(),
                addressing_style=addressing_style,
                verify_tls=verify_tls,
                concurrency=concurrency,
            )

        def ship(tree: Path, archive: Path, deployment: publish_module.Deployment) -> str:
            summary = publish_module.publish(
                tree,
                archive,
                deployment,
                store,
                concurrency=concurrency,
                dry_run=dry_run,
                create_bucket=create_bucket,
            )
            return json.dumps(summary.as_dict(), indent=2)

        deployment = self._deployment(repository, sha, ref, build_number)
        return await self._publish(packages, deployment, public_key, ship)

    @uncached
    async def deploy(
        self,
        source: Source,
        packages: Packages,
        repository: Repository,
        sha: Annotated[str, Doc("The commit sha the packages were built from")],
        public_key: PublicKey,
        instellar_auth_token: Annotated[
            dagger.Secret, Doc("OpsMaru/Instellar auth token, e.g. env:INSTELLAR_AUTH_TOKEN")
        ],
        instellar_package_token: Annotated[
            dagger.Secret, Doc("Instellar package token, e.g. env:INSTELLAR_PACKAGE_TOKEN")
        ],
        ref: Annotated[str, Doc("The git ref, e.g. refs/heads/main")] = "",
        build_number: BuildNumber = 0,
        instellar_endpoint: Annotated[str, Doc("The deployment API")] = DEFAULT_ENDPOINT,
        concurrency: Annotated[int, Doc("Parallel uploads")] = 8,
    ) -> str:
        """Verify, merge, upload and register the deployment with OpsMaru/Instellar."""
        cfg = await self._read_config(source)
        client = Client(
            endpoint=instellar_endpoint,
            auth_token=await instellar_auth_token.plaintext(),
            package_token=await instellar_package_token.plaintext(),
        )

        def ship(tree: Path, archive: Path, deployment: publish_module.Deployment) -> str:
            pushed = deploy_module.push(
                client, cfg, deployment, tree, archive, concurrency=concurrency
            )
            return json.dumps(pushed.as_dict(), indent=2)

        deployment = self._deployment(repository, sha, ref, build_number)
        return await self._publish(packages, deployment, public_key, ship)

    @staticmethod
    def _deployment(
        repository: str, sha: str, ref: str, build_number: int
    ) -> publish_module.Deployment:
        with _reported():
            return publish_module.Deployment(Identity(repository, build=build_number), sha, ref)

    @function
    def keygen(self, repository: Repository) -> dagger.Directory:
        """A new 4096-bit signing key pair, named <org>-<slug>.rsa and .rsa.pub."""
        with _reported():
            name = Identity(repository).key_name
        pair = keys.generate()
        return (
            dag.directory()
            .with_new_file(name, pair.private_pem.decode(), permissions=0o600)
            .with_new_file(f"{name}.pub", pair.public_pem.decode(), permissions=0o644)
        )

    @function
    @dagger_check
    async def check(self, source: Source) -> str:
        """Validate instellar.yml and report every problem."""
        cfg = await self._read_config(source)
        notes = "".join(f"\nwarning: {w}" for w in cfg.warnings)
        return f"{self.config}: ok ({cfg.type} package, {len(cfg.architectures)} arch){notes}"

    @function
    @dagger_check
    async def selftest(
        self,
        hello: Annotated[
            dagger.Directory, DefaultPath("/examples/hello"), Doc("The example app to build")
        ],
        platforms: Annotated[list[str], Doc("Platforms to build and install")] = [  # noqa: B006
            "linux/amd64",
            "linux/arm64",
        ],
    ) -> str:
        """Engine test: build examples/hello, install it trusting only our key, start it."""
        pair = keys.generate()
        private = dag.set_secret("pakman-selftest-private-key", pair.private_pem.decode())
        public = dag.set_secret("pakman-selftest-public-key", pair.public_pem.decode())
        repository = "pakman/hello"
        key_file = f"{Identity(repository).key_name}.pub"
        built = await self._build(hello, repository, private, public, platforms, "1.0.0", 1)
        lines = []
        for platform in platforms:
            out = await (
                dag.container(platform=dagger.Platform(platform))
                .from_("alpine:latest")
                .with_exec(["apk", "add", "--no-cache", "bash"])
                .with_directory("/repo", built)
                .with_new_file(f"/trusted/{key_file}", pair.public_pem.decode())
                .with_exec(
                    [
                        "apk",
                        "add",
                        "--repositories-file",
                        "/dev/null",
                        "--repository",
                        "/repo/pakman",
                        "--keys-dir",
                        "/trusted",
                        "hello",
                    ]
                )
                .with_exec(
                    ["sh", "-c", "SERVICE_MODE=web timeout 5 /var/lib/hello/service/run; true"]
                )
                .stdout()
            )
            if "hello from pakman" not in out:
                raise PakmanFailure(f"{platform}: the service did not start:\n{out}")
            lines.append(f"{platform}: {out.strip().splitlines()[-1]}")
        return "\n".join(lines)
