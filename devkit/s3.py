"""Real S3 servers on 127.0.0.1: versitygw (the tests' S3) and moto's server.

moto runs with authentication on only when asked (INITIAL_NO_AUTH_ACTION_COUNT), so wrong
credentials get a genuine 403 from the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from devkit.ports import free_port, stop, wait_for_port
from devkit.tls import ServerCertificate
from devkit.tools import need_tool


@dataclass
class S3Server:
    endpoint: str
    port: int
    access_key_id: str
    secret_access_key: str
    pid: int = 0  # the server process, for benchmarks that read its CPU time
    ca: Path | None = None  # the authority that signed its certificate, when it serves HTTPS

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            verify=str(self.ca) if self.ca else None,
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }


@contextlib.contextmanager
def moto_server(auth: bool = False) -> Iterator[S3Server]:
    """moto's S3 server. With ``auth``, unknown credentials get a real 403.

    Auth stays off otherwise: moto's signature check mishandles '/' in query
    strings (ListObjectsV2 with Prefix="a/"), which real S3 accepts.
    """
    binary = need_tool("moto_server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3" if auth else "inf"},
    )
    try:
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        if not auth:
            yield S3Server(
                endpoint, port, "AKIAMOTOTESTKEY00001", "moto-secret-Zq8x/T3st+Key", process.pid
            )
            return
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="publisher")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="publisher", PolicyName="all", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="publisher")["AccessKey"]
        yield S3Server(endpoint, port, key["AccessKeyId"], key["SecretAccessKey"], process.pid)
    finally:
        stop(process)


@contextlib.contextmanager
def versitygw_server(
    keep_alive: bool = False, tls: ServerCertificate | None = None
) -> Iterator[S3Server]:
    """A real S3 server: versitygw over a fresh folder, its own credentials, on 127.0.0.1;
    with ``keep_alive``, it keeps connections open between requests as S3 does; with
    ``tls``, it serves HTTPS with that certificate.

    It checks every checksum it is sent (BadDigest), keeps CRC-32s and composite
    multipart checksums, lists parts with theirs, refuses wrong signatures, and honours
    If-Match and If-None-Match. MinIO, the issue's first choice, is not served by the Go
    module proxy here; versitygw (Apache-2.0) is built the same way, by scripts/test.sh.
    """
    binary = need_tool("versitygw")
    port = free_port()
    access_key_id = "AKIA" + secrets.token_hex(8).upper()
    secret_access_key = secrets.token_urlsafe(30)
    with tempfile.TemporaryDirectory(prefix="pakman-s3-") as data:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                f"127.0.0.1:{port}",
                "--quiet",
                *(["--keep-alive"] if keep_alive else []),
                *(["--cert", str(tls.cert), "--key", str(tls.key)] if tls else []),
                "posix",
                data,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                "PATH": os.environ.get("PATH", ""),
                "ROOT_ACCESS_KEY": access_key_id,
                "ROOT_SECRET_KEY": secret_access_key,
            },
        )
        try:
            wait_for_port(port)
            endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
            yield S3Server(
                endpoint,
                port,
                access_key_id,
                secret_access_key,
                process.pid,
                tls.ca if tls else None,
            )
        finally:
            stop(process)
