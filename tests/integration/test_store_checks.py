"""Why publish hashes every part it sends itself unless the store has shown in the same
run that it refuses a part whose SHA-256 is not the one sent: not every store that answers
with a checksum checked it."""

from __future__ import annotations

import base64
import hashlib

from devkit.s3 import S3Server


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_store_may_echo_a_part_checksum_it_never_checked(moto: S3Server) -> None:
    """moto takes a part sent with another body's SHA-256 and answers with that SHA-256:
    its answer is no proof that the part holds the verified bytes."""
    client = moto.client()
    client.create_bucket(Bucket="echoes")
    upload = client.create_multipart_upload(Bucket="echoes", Key="k", ChecksumAlgorithm="SHA256")
    claimed = _sha256_b64(b"the verified part")
    answer = client.upload_part(
        Bucket="echoes",
        Key="k",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"other bytes",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=claimed,
    )
    assert answer["ChecksumSHA256"] == claimed
    assert claimed != _sha256_b64(b"other bytes")
