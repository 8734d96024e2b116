"""The OpsMaru/Instellar deployment API, as PAKman v8's ``push`` used it.

1. authenticate; 2. look up the deployment by sha; 3. fetch storage credentials;
4. upload (see :mod:`pakman.publish`); 5. create the deployment; 6. create its
configuration when the config has kits.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pakman.errors import ConfigError, PublishError, check_credential, redact

if TYPE_CHECKING:
    import urllib3

DEFAULT_ENDPOINT = "https://opsmaru.com"
STORAGE = "/publish/storage"  # where the API hands out the bucket to upload to
DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
BACKOFF_MAX = 5.0  # seconds: also the cap on a server's Retry-After
MAX_ANSWER = 1024 * 1024  # bytes of an answer, decoded: real ones are a few KiB
CHUNK = 16 * 1024  # read at a time, so one compressed chunk inflates to a bounded size


@functools.cache
def _retry_class() -> type[urllib3.Retry]:
    import urllib3

    class CappedRetry(urllib3.Retry):
        """Honours Retry-After, but never waits longer than the backoff cap."""

        def get_retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
            after = super().get_retry_after(response)
            return None if after is None else min(after, BACKOFF_MAX)

    return CappedRetry


@dataclass(frozen=True)
class Storage:
    """S3 settings handed out by the API; the secret never shows in repr."""

    endpoint: str
    region: str
    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


def _credential(path: str, name: str, given: Mapping[str, Any]) -> str:
    value = str(given[name])
    check_credential(f"instellar GET {path}: credential.{name}", value, PublishError)
    return value


@dataclass
class Client:
    """A small JSON client over urllib3, with v8's headers and status codes."""

    endpoint: str
    auth_token: str = field(repr=False)
    package_token: str = field(default="", repr=False)
    timeout: float = 30.0
    token: str | None = field(default=None, repr=False)
    deadline: float | None = None  # time.monotonic() after which no request starts

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        import urllib3

        if self.deadline is not None and time.monotonic() > self.deadline:
            raise PublishError(
                f"instellar {method} {path}: gave up: the run passed its deadline (--timeout)"
            )
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
            headers["x-instellar-package-token"] = self.package_token
        url = self.endpoint.rstrip("/") + path
        try:
            response = urllib3.request(
                method,
                url,
                body=json.dumps(body).encode() if body is not None else None,
                headers=headers,
                timeout=urllib3.Timeout(connect=10, read=self.timeout),
                preload_content=False,  # read below, bounded after decoding
                # Never follow a redirect: it would carry the tokens to another host.
                redirect=False,
                retries=_retry_class()(
                    total=3,
                    redirect=0,
                    backoff_factor=0.5,
                    backoff_max=BACKOFF_MAX,
                    status_forcelist=(502, 503, 504),
                    allowed_methods=None,
                    raise_on_status=False,
                    raise_on_redirect=False,
                ),
            )
        except urllib3.exceptions.HTTPError as error:
            reason = error.__class__.__name__
            raise PublishError(
                f"instellar {method} {path}: cannot reach {self.endpoint} ({reason})"
            ) from None
        try:
            if 300 <= response.status < 400:
                raise PublishError(
                    f"instellar {method} {path}: redirected ({response.status}); refusing to"
                    " follow it with the tokens (set INSTELLAR_ENDPOINT to the final address)"
                )
            raw = self._read(method, path, response)
        finally:
            response.release_conn()
        try:
            data = json.loads(raw) if raw else None
        except RecursionError:
            raise PublishError(f"instellar {method} {path}: answer nested too deeply") from None
        except ValueError:
            data = None
        return response.status, data

    def _read(self, method: str, path: str, response: urllib3.BaseHTTPResponse) -> bytes:
        """The answer's body, decoded, refused past MAX_ANSWER bytes: an endless body or a
        compression bomb costs at most one chunk's memory."""
        import urllib3

        body = bytearray()
        try:
            for chunk in response.stream(CHUNK, decode_content=True):
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise PublishError(
                        f"instellar {method} {path}: answer larger than"
                        f" {MAX_ANSWER // 1024 // 1024} MiB (after decoding); refused"
                    )
        except urllib3.exceptions.HTTPError as error:
            reason = error.__class__.__name__
            raise PublishError(
                f"instellar {method} {path}: the answer broke off or could not be decoded"
                f" ({reason})"
            ) from None
        return bytes(body)

    def _fail(self, method: str, path: str, status: int, data: Any) -> PublishError:
        detail = ""
        if isinstance(data, dict) and data.get("errors") is not None:
            detail = ": " + json.dumps(data["errors"], sort_keys=True)
        message = f"instellar {method} {path}: unexpected status {status}{detail}"
        return PublishError(self._redact(message))

    def _redact(self, message: str) -> str:
        return redact(message, (self.auth_token, self.package_token, self.token), limit=400)

    def _attributes(self, method: str, path: str, data: Any) -> dict[str, Any]:
        """``data.attributes`` of a 2xx answer, or an error naming the endpoint path."""
        inner = data.get("data") if isinstance(data, dict) else None
        attributes = inner.get("attributes") if isinstance(inner, dict) else None
        if not isinstance(attributes, dict):
            raise PublishError(f"instellar {method} {path}: unexpected answer (no data.attributes)")
        return attributes

    def authenticate(self) -> str:
        path = "/publish/automation/callback"
        status, data = self._request("POST", path, {"auth_token": self.auth_token})
        if status == 201:
            inner = data.get("data") if isinstance(data, dict) else None
            token = inner.get("token") if isinstance(inner, dict) else None
            if not isinstance(token, str) or not token:
                raise PublishError(f"instellar POST {path}: unexpected answer (no data.token)")
            check_credential(f"instellar POST {path}: data.token", token, PublishError)
            self.token = token
            return token
        if status in (401, 403, 404):
            raise PublishError(
                f"instellar POST {path}: INSTELLAR_AUTH_TOKEN was not accepted ({status})"
            )
        raise self._fail("POST", path, status, data)

    def get_deployment(self, sha: str) -> dict[str, Any] | None:
        path = f"/publish/deployments/{sha}"
        status, data = self._request("GET", path)
        if status == 404:
            return None
        if status == 200:
            return self._attributes("GET", path, data)
        raise self._fail("GET", path, status, data)

    def get_storage(self) -> Storage:
        path = STORAGE
        status, data = self._request("GET", path)
        if status != 200 or not isinstance(data, dict):
            raise self._fail("GET", path, status, data)
        try:
            a = data["data"]["attributes"]
            port = f":{a['port']}" if a.get("port") else ""
            return Storage(
                endpoint=f"{a.get('scheme', 'https')}://{a['host']}{port}",
                region=str(a.get("region") or "us-east-1"),
                bucket=str(a["bucket"]),
                access_key_id=_credential(path, "access_key_id", a["credential"]),
                secret_access_key=_credential(path, "secret_access_key", a["credential"]),
            )
        except (KeyError, TypeError):
            raise PublishError(
                f"instellar GET {path}: the storage answer lacks host, bucket or credential"
            ) from None

    def create_deployment(
        self, ref: str, sha: str, archive_path: str, stack: str | None
    ) -> tuple[str, dict[str, Any]]:
        path = "/publish/deployments"
        deployment: dict[str, Any] = {"ref": ref, "hash": sha, "archive_path": archive_path}
        if stack:
            deployment["stack"] = stack
        status, data = self._request("POST", path, {"deployment": deployment})
        if status in (200, 201):
            outcome = "created" if status == 201 else "already exists"
            return outcome, self._attributes("POST", path, data)
        raise self._fail("POST", path, status, data)

    def create_configuration(self, deployment_id: Any, payload: Mapping[str, Any]) -> str:
        # The id goes into the URL path: a missing or odd one must never become "/None".
        usable = isinstance(deployment_id, int | str) and not isinstance(deployment_id, bool)
        if not usable or not DEPLOYMENT_ID.fullmatch(str(deployment_id)):
            raise PublishError(
                "instellar POST /publish/deployments: unexpected answer"
                f" (no usable deployment id: {str(deployment_id)[:40]!r})"
            )
        path = f"/publish/deployments/{deployment_id}/configurations"
        status, data = self._request("POST", path, {"configuration": {"payload": dict(payload)}})
        if status == 201:
            return "created"
        if status == 200:
            return "already exists"
        raise self._fail("POST", path, status, data)


@dataclass(frozen=True)
class InstellarOptions:
    """The OpsMaru/Instellar deployment API and its tokens."""

    auth_token: str = field(repr=False)
    package_token: str = field(default="", repr=False)
    endpoint: str = ""

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        auth_token: str | None = None,
        package_token: str | None = None,
        endpoint: str | None = None,
    ) -> InstellarOptions:
        """Tokens and endpoint from arguments, then v8's ``INSTELLAR_*`` variables."""
        token = auth_token or env.get("INSTELLAR_AUTH_TOKEN")
        if not token:
            raise ConfigError("INSTELLAR_AUTH_TOKEN: required for push")
        package = package_token or env.get("INSTELLAR_PACKAGE_TOKEN") or ""
        check_credential("instellar-auth-token" if auth_token else "INSTELLAR_AUTH_TOKEN", token)
        check_credential(
            "instellar-package-token" if package_token else "INSTELLAR_PACKAGE_TOKEN", package
        )
        name = "--instellar-endpoint" if endpoint else "INSTELLAR_ENDPOINT"
        endpoint = endpoint or env.get("INSTELLAR_ENDPOINT") or DEFAULT_ENDPOINT
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{name}: must be an http(s) URL (got {redact(endpoint, [token, package])!r})"
            )
        return cls(auth_token=token, package_token=package, endpoint=endpoint)
