"""What an outside probe found in the S3 API, checked with boto3: keys XML cannot carry,
DeleteObjects limits, signature age, presigned-URL lifetime, SigV2, the credential scope.
Exits non-zero on the first mismatch.
Usage: python boto3_hardening.py ENDPOINT ACCESS_KEY SECRET_KEY MODE
  MODE strict: the default policy (region us-east-1, SigV2 refused)
  MODE sigv2: a server started with SigV2 allowed"""

import datetime
import email.utils
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import botocore.auth
from botocore import handlers
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from s3check import check, error_code

endpoint, access, secret, mode = sys.argv[1:5]


def client(region="us-east-1", **config):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(**{"signature_version": "s3v4", "s3": {"addressing_style": "path"},
                         "retries": {"max_attempts": 1}, **config}),
    )


def fetch(url, method="GET", headers=None):
    """Status and error code of a plain HTTP request; the body must be well-formed XML."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, None
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, ET.fromstring(body).findtext("Code")


def sigv4_raw(method, url, service, region="us-east-1"):
    """A request signed by botocore's SigV4 signer for any service and region."""
    request = AWSRequest(method=method, url=url)
    signer = S3SigV4Auth if service == "s3" else SigV4Auth  # S3's adds x-amz-content-sha256
    signer(Credentials(access, secret), service, region).add_auth(request)
    return fetch(url, method, dict(request.headers.items()))


def clock(now):
    """Makes botocore sign with the clock `now` (a function returning the time)."""
    botocore.auth.get_current_datetime = now


real_now = botocore.auth.get_current_datetime

if mode == "sigv2":
    # s3s's SigV2 check signs a path-style bucket request without its trailing slash, where
    # botocore signs one: bucket-level calls (CreateBucket) fail with SigV2, object calls work.
    client().create_bucket(Bucket="old-client")
    v2 = client(signature_version="s3")
    check([b["Name"] for b in v2.list_buckets()["Buckets"]] == ["old-client"], "SigV2 allowed: list buckets")
    v2.put_object(Bucket="old-client", Key="k", Body=b"v")
    check(v2.get_object(Bucket="old-client", Key="k")["Body"].read() == b"v", "SigV2 allowed: put and get")
    two_hours_ago = real_now() - datetime.timedelta(hours=2)
    botocore.auth.HmacV1Auth._get_date = lambda self: email.utils.formatdate(two_hours_ago.timestamp(), usegmt=True)
    check(error_code(lambda: v2.list_buckets()) == "RequestTimeTooSkewed", "SigV2 request dated two hours ago")
    del botocore.auth.HmacV1Auth._get_date
    url = v2.generate_presigned_url("get_object", Params={"Bucket": "old-client", "Key": "k"}, ExpiresIn=3600)
    check(fetch(url) == (200, None), "SigV2 presigned URL within a week")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": "old-client", "Key": "k"}, ExpiresIn=2 * 604800)
    check(fetch(url) == (400, "AuthorizationQueryParametersError"), "SigV2 presigned URL past a week")
    print("boto3 hardening (sigv2) passed")
    sys.exit(0)

s3 = client()
s3.create_bucket(Bucket="hard")

# 1. Keys XML 1.0 cannot carry, and keys that naive URL decoding would change.
keys = ["ctl/\x01one", "ctl/100% sure", "ctl/cr\rlf", "ctl/plus+sign", "ctl/sp ace", "ctl/tab\tkey"]
for key in keys:
    s3.put_object(Bucket="hard", Key=key, Body=key.encode())
listed = s3.list_objects_v2(Bucket="hard", Prefix="ctl/")
check([o["Key"] for o in listed["Contents"]] == sorted(keys), "keys with control characters, + and % list intact")
pages = s3.get_paginator("list_objects_v2").paginate(Bucket="hard", Prefix="ctl/", PaginationConfig={"PageSize": 2})
check([o["Key"] for p in pages for o in p["Contents"]] == sorted(keys), "paginated listing")
s3.put_object(Bucket="hard", Key="dir\x01/x", Body=b"x")
listed = s3.list_objects_v2(Bucket="hard", Delimiter="/")
check([p["Prefix"] for p in listed["CommonPrefixes"]] == ["ctl/", "dir\x01/"], "common prefixes with control characters")
check(s3.get_object(Bucket="hard", Key="ctl/\x01one")["Body"].read() == b"ctl/\x01one", "get a control-character key")
s3.create_bucket(Bucket="empty")
listed = s3.list_objects_v2(Bucket="empty", Prefix="\x02")
check(listed["KeyCount"] == 0 and listed["Prefix"] == "\x02", "empty bucket, control character in the prefix")

# Without encoding-type=url the server refuses rather than write XML that is not well-formed.
plain = client()
plain.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", handlers.set_list_objects_encoding_type_url)
check(error_code(lambda: plain.list_objects_v2(Bucket="hard", Prefix="ctl/")) == "InvalidArgument",
      "unencoded listing of unrepresentable keys: InvalidArgument")
check(error_code(lambda: plain.list_objects_v2(Bucket="empty", Prefix="\x02")) == "InvalidArgument",
      "unencoded control-character prefix: InvalidArgument")
check([o["Key"] for o in plain.list_objects_v2(Bucket="hard", Prefix="ctl/plus")["Contents"]] == ["ctl/plus+sign"],
      "an unencoded listing of keys XML can carry still works")
check(error_code(lambda: s3.get_object(Bucket="hard", Key="nope\x01")) == "NoSuchKey",
      "an error about a control-character key is well-formed XML")

# 2. DeleteObjects: at most 1,000 keys; an empty key is named as such.
too_many = [{"Key": f"k{i}"} for i in range(1001)]
check(error_code(lambda: s3.delete_objects(Bucket="hard", Delete={"Objects": too_many})) == "MalformedXML",
      "DeleteObjects with 1001 keys")
deleted = s3.delete_objects(Bucket="hard", Delete={"Objects": too_many[:1000]})
check(len(deleted["Deleted"]) == 1000, "DeleteObjects with 1000 keys")
unchecked = client(parameter_validation=False)
result = unchecked.delete_objects(Bucket="hard", Delete={"Objects": [{"Key": ""}, {"Key": "ctl/sp ace"}]})
check([e["Code"] for e in result.get("Errors", [])] == ["UserKeyMustBeSpecified"], "DeleteObjects with an empty key")
check([d["Key"] for d in result["Deleted"]] == ["ctl/sp ace"], "the other key is deleted")

# 3. Presigned URLs live at most a week.
params = {"Bucket": "hard", "Key": "ctl/plus+sign"}
check(fetch(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=604800)) == (200, None),
      "presigned URL valid for a week")
for seconds in (604801, 4294967295):
    url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
    check(fetch(url) == (400, "AuthorizationQueryParametersError"), f"presigned URL valid for {seconds} s")
two_hours_ago = real_now() - datetime.timedelta(hours=2)
clock(lambda: two_hours_ago)
url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
clock(real_now)
check(fetch(url) == (403, "AccessDenied"), "expired presigned URL")

# 4. A signed request is good for 15 minutes either side of the server's clock.
for label, when in [("2020", datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)),
                    ("2099", datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc)),
                    ("20 minutes ago", real_now() - datetime.timedelta(minutes=20))]:
    clock(lambda when=when: when)
    code = error_code(lambda: s3.list_buckets())
    clock(real_now)
    check(code == "RequestTimeTooSkewed", f"request signed {label}")
clock(lambda: real_now() - datetime.timedelta(minutes=5))
check(len(s3.list_buckets()["Buckets"]) == 2, "request signed 5 minutes ago")
clock(real_now)

# 5. SigV2 is refused by default.
v2 = client(signature_version="s3")
check(error_code(lambda: v2.list_buckets()) == "InvalidRequest", "SigV2 header refused")
url = v2.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
check(fetch(url) == (400, "InvalidRequest"), "SigV2 presigned URL refused")

# 6. The credential scope: this server's region, service s3.
check(error_code(lambda: client(region="eu-west-1").list_buckets()) == "AuthorizationHeaderMalformed",
      "signed for another region")
check(sigv4_raw("GET", endpoint + "/", "ec2") == (400, "AuthorizationHeaderMalformed"), "signed for service ec2")
check(sigv4_raw("GET", endpoint + "/", "sts") == (400, "AuthorizationHeaderMalformed"), "signed for service sts")
signed = sigv4_raw("GET", endpoint + "/", "s3")
check(signed == (200, None), f"signed for s3 by hand: {signed}")

print("boto3 hardening passed")
