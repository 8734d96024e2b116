"""The OpsMaru/Instellar deployment API, as PAKman v8's ``push`` used it.

1. authenticate; 2. look up the deployment by sha; 3. fetch storage credentials;
4. upload (see :mod:`pakman.publish`); 5. create the deployment; 6. create its
configuration when the config has kits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pakman.errors import PublishError

DEFAULT_ENDPOINT = "https://opsmaru.com"


@dataclass(frozen=True)
class Storage:
    """S3 settings handed out by the API; the secret never shows in repr."""

    endpoint: str
    region: str
    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


@dataclass
class Client:
    """A small JSON client over urllib3, with v8's headers and status codes."""

    endpoint: str
    auth_token: str = field(repr=False)
    package_token: str = field(default="", repr=False)
    timeout: float = 30.0
    token: str | None = field(default=None, repr=False)

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        import urllib3

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
                retries=urllib3.Retry(
                    total=3,
                    backoff_factor=0.5,
                    status_forcelist=(502, 503, 504),
                    allowed_methods=None,
                    raise_on_status=False,
                ),
            )
        except urllib3.exceptions.HTTPError as error:
            reason = error.__class__.__name__
            raise PublishError(
                f"instellar {method} {path}: cannot reach {self.endpoint} ({reason})"
            ) from None
        try:
            data = json.loads(response.data) if response.data else None
        except ValueError:
            data = None
        return response.status, data

    def _fail(self, method: str, path: str, status: int, data: Any) -> PublishError:
        detail = ""
        if isinstance(data, dict) and data.get("errors") is not None:
            detail = ": " + json.dumps(data["errors"], sort_keys=True)[:300]
        message = f"instellar {method} {path}: unexpected status {status}{detail}"
        for secret in (self.auth_token, self.package_token, self.token):
            if secret:
                message = message.replace(secret, "***")
        return PublishError(message)

    def authenticate(self) -> str:
        path = "/publish/automation/callback"
        status, data = self._request("POST", path, {"auth_token": self.auth_token})
        if status == 201 and isinstance(data, dict):
            token = (data.get("data") or {}).get("token")
            if token:
                self.token = str(token)
                return self.token
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
        if status == 200 and isinstance(data, dict):
            return dict(data.get("data", {}).get("attributes", {}))
        raise self._fail("GET", path, status, data)

    def get_storage(self) -> Storage:
        path = "/publish/storage"
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
                access_key_id=str(a["credential"]["access_key_id"]),
                secret_access_key=str(a["credential"]["secret_access_key"]),
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
        if status in (200, 201) and isinstance(data, dict):
            outcome = "created" if status == 201 else "already exists"
            return outcome, dict(data.get("data", {}).get("attributes", {}))
        raise self._fail("POST", path, status, data)

    def create_configuration(self, deployment_id: Any, payload: Mapping[str, Any]) -> str:
        path = f"/publish/deployments/{deployment_id}/configurations"
        status, data = self._request("POST", path, {"configuration": {"payload": dict(payload)}})
        if status == 201:
            return "created"
        if status == 200:
            return "already exists"
        raise self._fail("POST", path, status, data)
