"""PAKman as a Dagger module: signed Alpine packages from instellar.yml, shipped to S3.

A thin shell. Every decision (config, rendering, the container recipe, verification,
merge, publish, deploy) is made by the ``pakman`` library; the pipeline steps are the
very functions the ``pakman`` CLI calls (:mod:`pakman.pipeline`). Each function here
resolves its arguments (:mod:`.arguments`), folds recipes into containers
(:mod:`.containers`), moves bytes through the engine (:mod:`.engine`), and is declared
behind the module's one error boundary (``engine.function``, ``engine.uncached``).
"""

import dataclasses
import functools
import json
from pathlib import Path

import dagger
from dagger import object_type

from pakman import keys, pipeline, sign
from pakman import recipe as recipes  # the module has its own function named recipe
from pakman.errors import PakmanError
from pakman.identity import Identity, resolve_alpine
from pakman.publish.deployment import Deployment
from pakman.publish.instellar import DEFAULT_ENDPOINT
from pakman.storage.options import DEFAULT_CONCURRENCY, AddressingStyle
from pakman.tree import files as package_files
from pakman_ci import arguments, containers, engine
from pakman_ci.arguments import (
    AMD64,
    AccessKeyId,
    Addressing,
    Alpine,
    Archive,
    Branch,
    Bucket,
    BuildNumber,
    BuildOutputs,
    BuildPrivateKey,
    Concurrency,
    ConfigPath,
    ConfigSource,
    CreateBucket,
    Endpoint,
    IndexPrivateKey,
    InstellarAuthToken,
    InstellarEndpoint,
    InstellarPackageToken,
    Keep,
    OptionalPublicKey,
    Packages,
    Platform,
    Platforms,
    Prefix,
    PublicKey,
    PublishDryRun,
    RecipePlatform,
    Ref,
    Region,
    Replace,
    RepoDryRun,
    Repository,
    RepositoryBucket,
    SecretAccessKey,
    Sha,
    SkipVerify,
    Source,
    Stack,
    Timeout,
    VerifyTls,
    Version,
)
from pakman_ci.engine import PakmanFailure, function, uncached

__all__ = ["Pakman", "PakmanFailure"]


@object_type
class Pakman:
    """Build signed Alpine packages from instellar.yml and ship them to S3-compatible storage."""

    alpine: Alpine = ""
    config: ConfigPath = "instellar.yml"

    @function
    async def builder(self, source: Source, platform: Platform = AMD64) -> dagger.Container:
        """The Alpine build container, with alpine-sdk, a builder user and caches."""
        try:
            cfg = await arguments.config(source, self.config)
        except PakmanError:  # no config, or a broken one: the default branch
            cfg = None
        return containers.builder(arguments.branch(self.alpine, cfg), platform)

    @function
    def recipe(self, platform: RecipePlatform = AMD64, stack: Stack = "") -> str:
        """The build container's recipe as JSON: image, packages, user, caches."""
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
        filtered = arguments.filtered(source)
        plan = await arguments.plan(filtered, self.config, repository, version, build_number)
        # Against the source as given: a re-render of unchanged files changes nothing.
        return source.with_directory(".", containers.rendered(plan)).changes(source)

    @function
    async def build(
        self,
        source: Source,
        repository: Repository,
        private_key: BuildPrivateKey,
        public_key: PublicKey,
        platforms: Platforms = [AMD64],  # noqa: B006 - dagger reads the default from the signature
        version: Version = "",
        build_number: BuildNumber = 0,
    ) -> dagger.Directory:
        """Build the packages for every platform concurrently, then sign them: <org>/<arch>/...

        The build container gets no key: abuild signs with a throwaway key made there, and
        the packages and indexes are then re-signed with the real key by pakman itself, in
        the module's runtime, where nothing of the application runs.
        """
        source = arguments.filtered(source)
        plan = await arguments.plan(source, self.config, repository, version, build_number)
        arches = arguments.arches(plan.config, platforms)
        branch = arguments.branch(self.alpine, plan.config)
        built = await containers.build(plan, branch, source, arches)
        # Re-signed here, in the module's runtime, then verified with the real public key.
        folder = await engine.exported(built.packages, engine.working_folder("packages-"))
        private_pem = (await engine.plaintext(private_key)).encode()
        trust = await arguments.trust(public_key, plan.identity)
        signer = f"{plan.identity.key_name}.pub"

        def sign_and_verify() -> None:
            sign.sign_tree(folder, private_pem, signer, expect=built.throwaway, what="private-key")
            pipeline.verify(folder, package_files(folder), trust, "build")

        await engine.in_thread(sign_and_verify)
        return await engine.handed_back(folder)

    @function
    async def merge(
        self,
        packages: BuildOutputs,
        repository: Repository,
        public_key: OptionalPublicKey = None,
        skip_verify: SkipVerify = False,
    ) -> dagger.File:
        """Verify and merge per-arch packages into one deterministic packages.zip."""
        async with engine.inputs(packages) as given:
            identity = Identity(repository)
            trust = await arguments.trust(public_key, identity, skip_verify=skip_verify)
            output = Path("packages.zip").resolve()  # the module's workdir, handed back below
            pipeline.merge([given.tree], output, trust)
        return engine.handed_back_file(output.name)

    @uncached
    async def publish(
        self,
        packages: Packages,
        repository: Repository,
        sha: Sha,
        bucket: Bucket,
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
        dry_run: PublishDryRun = False,
        timeout: Timeout = pipeline.DEFAULT_TIMEOUT,
    ) -> str:
        """Verify, then upload packages and archive to S3, manifest last; safe to re-run."""
        target = Deployment.resolve(repository, sha, ref, build_number)
        store = await arguments.store_options(
            bucket=bucket,
            endpoint=endpoint,
            region=region,
            addressing_style=addressing_style,
            verify_tls=verify_tls,
            create_bucket=create_bucket,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            concurrency=concurrency,
        )
        trust = await arguments.trust(public_key, target.identity, skip_verify=skip_verify)
        async with engine.inputs(packages, archive) as given:
            summary = await engine.in_thread(
                functools.partial(
                    pipeline.publish,
                    given.tree,
                    given.archive,
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
        instellar_auth_token: InstellarAuthToken,
        instellar_package_token: InstellarPackageToken,
        archive: Archive = None,
        ref: Ref = "",
        build_number: BuildNumber = 0,
        instellar_endpoint: InstellarEndpoint = DEFAULT_ENDPOINT,
        concurrency: Concurrency = DEFAULT_CONCURRENCY,
        timeout: Timeout = pipeline.DEFAULT_TIMEOUT,
    ) -> str:
        """Verify, upload and register the deployment with OpsMaru/Instellar (v8's push)."""
        cfg = await arguments.config(source, self.config)
        target = Deployment.resolve(repository, sha, ref, build_number)
        instellar = await arguments.instellar_options(
            auth_token=instellar_auth_token,
            package_token=instellar_package_token,
            endpoint=instellar_endpoint,
        )
        trust = await arguments.trust(public_key, target.identity)
        async with engine.inputs(packages, archive) as given:
            pushed = await engine.in_thread(
                functools.partial(
                    pipeline.push,
                    given.tree,
                    given.archive,
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
        private_key: IndexPrivateKey,
        bucket: RepositoryBucket,
        access_key_id: AccessKeyId,
        secret_access_key: SecretAccessKey,
        source: ConfigSource,
        endpoint: Endpoint = "",
        region: Region = "",
        addressing_style: Addressing = AddressingStyle.AUTO,
        verify_tls: VerifyTls = True,
        create_bucket: CreateBucket = False,
        prefix: Prefix = "alpine",
        keep: Keep = 5,
        replace: Replace = False,
        dry_run: RepoDryRun = False,
        timeout: Timeout = pipeline.DEFAULT_TIMEOUT,
        branch: Branch = "",
    ) -> str:
        """Verify, then add packages to a signed apk repository in the bucket (apk add/upgrade)."""
        identity = Identity(repository)
        branch = await arguments.repository_branch(branch, self.alpine, source, self.config)
        store = await arguments.store_options(
            bucket=bucket,
            endpoint=endpoint,
            region=region,
            addressing_style=addressing_style,
            verify_tls=verify_tls,
            create_bucket=create_bucket,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
        private_pem = (await engine.plaintext(private_key)).encode()
        # The public key under the name abuild signs with, as hosts will trust it.
        trust = await arguments.trust(public_key, identity)
        async with engine.inputs(packages) as given:
            summary = await engine.in_thread(
                functools.partial(
                    pipeline.repo,
                    [given.tree],
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
        name = Identity(repository).key_name
        pair = keys.generate()
        # Written in the module's working folder and handed back from there: a key passed
        # as a call argument (with_new_file's contents) is sent verbatim to telemetry.
        folder = engine.working_folder("keygen-")
        private = folder / name
        private.touch(mode=0o600)
        private.write_bytes(pair.private_pem)
        (folder / f"{name}.pub").write_bytes(pair.public_pem)
        (folder / f"{name}.pub").chmod(0o644)
        return await engine.handed_back(folder)

    @function
    async def check(self, source: Source) -> str:
        """Validate instellar.yml and report every problem."""
        return pipeline.check_summary(await arguments.config(source, self.config), self.config)
