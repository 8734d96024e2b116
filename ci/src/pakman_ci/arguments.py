"""The module's arguments: their types and docs as the engine shows them, and their
resolution into the library's own objects (config, plan, trust, store and Instellar
options), each group by name, as the CLI resolves its options."""

from pathlib import Path
from typing import Annotated, overload

import dagger
from dagger import DefaultPath, Doc, Ignore, enum_type

from pakman import bootstrap
from pakman import config as config_module
from pakman import recipe as recipes
from pakman.errors import ConfigError
from pakman.identity import Identity, resolve_alpine
from pakman.publish.instellar import InstellarOptions
from pakman.storage.options import DEFAULT_CONCURRENCY, AddressingStyle, StoreOptions
from pakman.trust import Trust, trust_pem
from pakman_ci import containers, engine

# The library's enum, registered with the engine: one definition for the CLI and the module.
enum_type(AddressingStyle)

AMD64 = dagger.Platform("linux/amd64")

# --- the object's own arguments, of every function ---------------------------------------

Alpine = Annotated[
    str, Doc("Alpine version: 3.20, v3.20, edge or latest-stable (default: the config's stack)")
]
ConfigPath = Annotated[str, Doc("Path of instellar.yml inside the source")]

# --- what is built -------------------------------------------------------------------------

Source = Annotated[
    dagger.Directory,
    DefaultPath("/"),
    Ignore(list(recipes.SOURCE_IGNORE)),
    Doc(
        "The application repository, with instellar.yml. Pass --source . when calling the"
        " module remotely (-m github.com/...): the default is the module's own repository"
    ),
]
ConfigSource = Annotated[
    dagger.Directory,
    DefaultPath("/"),
    Ignore(list(recipes.CONFIG_ONLY)),
    Doc(
        "The application repository, whose config's stack names the branch (only its"
        " YAML files are read). Pass --source . when calling the module remotely"
    ),
]
Repository = Annotated[str, Doc("The GitHub repository, owner/name: it names the package")]
Version = Annotated[str, Doc("Package version (default: git describe --tags of the source)")]
BuildNumber = Annotated[int, Doc("Build number, the package's pkgrel")]
Platform = Annotated[dagger.Platform, Doc("Platform, e.g. linux/amd64 or linux/arm64")]
RecipePlatform = Annotated[dagger.Platform, Doc("Platform, e.g. linux/arm64")]
Platforms = Annotated[
    list[dagger.Platform],
    Doc("Platforms to build, all at once, e.g. linux/amd64,linux/arm64"),
]
Stack = Annotated[str, Doc("The config's stack version, e.g. 3.19")]

# --- packages and keys ---------------------------------------------------------------------

Packages = Annotated[dagger.Directory, Doc("Packages tree from build: <org>/<arch>/*.apk")]
BuildOutputs = Annotated[
    dagger.Directory,
    Doc("Per-arch outputs: abuild's <org>/<arch>/ or downloaded artifacts"),
]
Archive = Annotated[
    dagger.File | None, Doc("The packages.zip from merge (default: made from the packages)")
]
PublicKey = Annotated[dagger.Secret, Doc("The abuild public key (PEM), e.g. env:ABUILD_PUBLIC_KEY")]
OptionalPublicKey = Annotated[
    dagger.Secret | None,
    Doc("Verify every package against this public key first (required unless skip-verify)"),
]
SkipVerify = Annotated[bool, Doc("Ship without verifying against a public key (not advised)")]
BuildPrivateKey = Annotated[
    dagger.Secret,
    Doc(
        "The abuild private key (PEM), e.g. env:ABUILD_PRIVATE_KEY: used by pakman's"
        " own code only, never in the build container"
    ),
]
IndexPrivateKey = Annotated[dagger.Secret, Doc("The abuild private key (PEM) that signs the index")]

# --- where they go -------------------------------------------------------------------------

Sha = Annotated[str, Doc("The commit sha the packages were built from")]
Ref = Annotated[str, Doc("The git ref, e.g. refs/heads/main")]
Bucket = Annotated[str, Doc("S3 bucket")]
RepositoryBucket = Annotated[str, Doc("S3 bucket holding the repository")]
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
PublishDryRun = Annotated[bool, Doc("Print the plan; read storage, write nothing")]
RepoDryRun = Annotated[bool, Doc("Print what would change; write nothing")]
Prefix = Annotated[str, Doc("Folder of the repository in the bucket")]
Keep = Annotated[int, Doc("Newest versions kept per package name")]
Replace = Annotated[bool, Doc("Replace a version already there with other bytes")]
Branch = Annotated[
    str,
    Doc("Alpine branch, e.g. v3.23 (default: --alpine, else the stack of --source)"),
]
InstellarAuthToken = Annotated[
    dagger.Secret, Doc("OpsMaru/Instellar auth token, e.g. env:INSTELLAR_AUTH_TOKEN")
]
InstellarPackageToken = Annotated[
    dagger.Secret, Doc("Instellar package token, e.g. env:INSTELLAR_PACKAGE_TOKEN")
]
InstellarEndpoint = Annotated[str, Doc("The deployment API")]


# --- resolved into the library's objects ---------------------------------------------------


def filtered(source: dagger.Directory) -> dagger.Directory:
    """The source without what the module leaves out. The engine applies ``Ignore`` only
    to a local upload by the CLI, not to a directory passed by a module or from git; and a
    filtered snapshot is keyed by its contents, so what it leaves out changes no key."""
    return source.filter(exclude=list(recipes.SOURCE_IGNORE))


@overload
async def config(source: dagger.Directory, path: str) -> config_module.Config: ...


@overload
async def config(
    source: dagger.Directory, path: str, *, missing_ok: bool
) -> config_module.Config | None: ...


async def config(
    source: dagger.Directory, path: str, *, missing_ok: bool = False
) -> config_module.Config | None:
    """The config at ``path`` in the source, parsed and checked."""
    try:
        text = await source.file(path).contents()
    except dagger.QueryError:
        if missing_ok:
            return None
        raise ConfigError(f"{path}: no such file in the source") from None
    return config_module.parse(text, Path(path).name)


def branch(alpine: str, cfg: config_module.Config | None) -> str:
    """The Alpine branch built for: --alpine, else the config's stack."""
    return resolve_alpine(alpine, cfg.alpine_version if cfg else None)


async def repository_branch(
    given: str, alpine: str, source: dagger.Directory, config_path: str
) -> str:
    """The repository's branch, as the CLI's --branch: given, else --alpine, else the
    stack of the source's config when there is one (a broken one is refused)."""
    cfg = None if given or alpine else await config(source, config_path, missing_ok=True)
    return resolve_alpine(given or alpine, cfg.alpine_version if cfg else None, option="branch")


async def plan(
    source: dagger.Directory, config_path: str, repository: str, version: str, build_number: int
) -> bootstrap.Plan:
    """What bootstrap renders for the source; the version defaults to its git describe."""
    cfg = await config(source, config_path)
    facts = await containers.git_facts(source)
    entries = set(await source.entries())
    made = bootstrap.plan(
        cfg, repository, version or facts.version, build_number, facts.epoch, facts.commit
    )
    bootstrap.check_workspace(cfg, made.identity, lambda name: name in entries)
    return made


def arches(
    cfg: config_module.Config, platforms: list[dagger.Platform]
) -> dict[dagger.Platform, str]:
    """Each platform's Alpine arch; refused unless the config builds it."""
    recipes.check_platforms(cfg.architectures, [str(p) for p in platforms])
    return {p: recipes.alpine_arch(str(p)) for p in platforms}


async def trust(
    public_key: dagger.Secret | None, identity: Identity, *, skip_verify: bool = False
) -> Trust:
    """What packages are verified against: the public key, unless verification is skipped."""
    pem = (await engine.plaintext(public_key)).encode() if public_key is not None else None
    return trust_pem(pem, identity, skip=skip_verify)


async def store_options(
    *,
    bucket: str,
    endpoint: str,
    region: str,
    addressing_style: AddressingStyle,
    verify_tls: bool,
    create_bucket: bool,
    access_key_id: dagger.Secret,
    secret_access_key: dagger.Secret,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> StoreOptions:
    """The bucket options publish and repo share, the credentials read from their Secrets."""
    access, secret = (
        await engine.plaintext(access_key_id),
        await engine.plaintext(secret_access_key),
    )
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


async def instellar_options(
    *, auth_token: dagger.Secret, package_token: dagger.Secret, endpoint: str
) -> InstellarOptions:
    """The deployment API and its tokens, read from their Secrets."""
    return InstellarOptions.resolve(
        {},
        auth_token=await engine.plaintext(auth_token),
        package_token=await engine.plaintext(package_token),
        endpoint=endpoint,
    )
