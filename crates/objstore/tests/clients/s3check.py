"""What the boto3 scripts share: a check that stops at the first mismatch, and the S3 error
code of a call."""

import sys

from botocore.exceptions import ClientError


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None
