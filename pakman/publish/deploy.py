"""Register a deployment with OpsMaru/Instellar, uploading first unless it already exists."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman.config import PASSTHROUGH, Config
from pakman.digest import Digest
from pakman.errors import ConfigError, PublishError
from pakman.publish.deployment import Deployment
from pakman.publish.instellar import STORAGE, Client, Storage
from pakman.publish.upload import ProgressFactory, Summary, publish
from pakman.storage.options import StoreOptions, open_checked
from pakman.storage.s3 import S3Store
from pakman.tree import Snapshot


@dataclass(frozen=True)
class Pushed:
    archive_path: str
    deployment: str  # "created" or "already exists"
    configuration: str | None  # None when the config has no kits
    summary: Summary | None  # None when the deployment existed and nothing was uploaded

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive_path": self.archive_path,
            "deployment": self.deployment,
            "configuration": self.configuration,
            "upload": self.summary.as_dict() if self.summary else None,
        }


def _open(storage: Storage, concurrency: int, deadline: float | None) -> S3Store:
    """Instellar's storage, through the checks ``--bucket`` and ``--endpoint`` get."""
    options = StoreOptions(
        bucket=storage.bucket,
        endpoint=storage.endpoint,
        region=storage.region,
        access_key_id=storage.access_key_id,
        secret_access_key=storage.secret_access_key,
        concurrency=concurrency,
    )
    try:
        store = open_checked(options)
    except ConfigError as error:  # the API's answer, not the user's option, is at fault
        raise PublishError(f"instellar GET {STORAGE}: {error}") from None
    assert isinstance(store, S3Store)  # a bucket, never a folder
    store.deadline = deadline
    return store


def push(
    client: Client,
    config: Config,
    deployment: Deployment,
    snapshot: Snapshot,
    digests: Mapping[Path, Digest],
    archive: Path,
    *,
    concurrency: int = 8,
    deadline: float | None = None,
    log: Callable[[str], None] = lambda _: None,
    progress_factory: ProgressFactory | None = None,
) -> Pushed:
    """v8's push flow, with an idempotent upload in the middle; nothing starts past
    ``deadline`` (``time.monotonic()``)."""
    client.deadline = deadline
    client.authenticate()
    existing = client.get_deployment(deployment.sha)
    summary = None
    if existing is not None and existing.get("archive_path"):
        archive_path = str(existing["archive_path"])
        log(f"deployment {deployment.sha} exists: re-registering {archive_path} without uploading")
    else:
        store = _open(client.get_storage(), concurrency, deadline)
        summary = publish(
            snapshot,
            digests,
            archive,
            deployment,
            store,
            concurrency=concurrency,
            log=log,
            progress_factory=progress_factory,
        )
        archive_path = summary.archive_path
    outcome, attributes = client.create_deployment(
        deployment.ref, deployment.sha, archive_path, config.stack
    )
    configuration = None
    if config.deployment.get("kits"):
        payload = {key: config.deployment[key] for key in PASSTHROUGH if key in config.deployment}
        configuration = client.create_configuration(attributes.get("id"), payload)
    return Pushed(archive_path, outcome, configuration, summary)
