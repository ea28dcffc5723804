"""Drives a Nimbus S3 endpoint with boto3 the way an application would; exits non-zero on the
first mismatch. Usage: python boto3_walkthrough.py ENDPOINT ACCESS_KEY SECRET_KEY WORKDIR"""

import hashlib
import os
import sys
import time
import urllib.error
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from s3check import check, error_code

endpoint, access, secret, work = sys.argv[1:5]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    # SigV4 for presigned URLs too: Nimbus refuses SigV2 unless told otherwise.
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)


s3.create_bucket(Bucket="uploads")
check(error_code(lambda: s3.create_bucket(Bucket="uploads")) == "BucketAlreadyOwnedByYou", "create twice")
check(error_code(lambda: s3.create_bucket(Bucket="Bad_Name")) == "InvalidBucketName", "invalid bucket name")
check([b["Name"] for b in s3.list_buckets()["Buckets"]] == ["uploads"], "list buckets")
s3.head_bucket(Bucket="uploads")
check(error_code(lambda: s3.head_bucket(Bucket="missing")) in ("404", "NoSuchBucket"), "head missing bucket")

# Small object with metadata and content type.
body = b"hello from boto3\n"
put = s3.put_object(Bucket="uploads", Key="notes/hello.txt", Body=body, ContentType="text/plain",
                    Metadata={"owner": "ada"})
check(put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), "ETag is the MD5")
got = s3.get_object(Bucket="uploads", Key="notes/hello.txt")
check(got["Body"].read() == body, "get body")
check(got["ContentType"] == "text/plain", "content type")
check(got["Metadata"] == {"owner": "ada"}, "user metadata")
head = s3.head_object(Bucket="uploads", Key="notes/hello.txt")
check(head["ContentLength"] == len(body), "head length")
check(error_code(lambda: s3.get_object(Bucket="uploads", Key="nope")) == "NoSuchKey", "missing key")
check(error_code(lambda: s3.put_object(Bucket="uploads", Key="k" * 1025, Body=b"x")) == "KeyTooLongError", "key over 1024 bytes")

# Range GET.
rng = s3.get_object(Bucket="uploads", Key="notes/hello.txt", Range="bytes=6-9")
check(rng["Body"].read() == b"from", "range get")
check(rng["ContentRange"] == f"bytes 6-9/{len(body)}", "content range")
check(error_code(lambda: s3.get_object(Bucket="uploads", Key="notes/hello.txt", Range="bytes=999-")) == "InvalidRange", "unsatisfiable range")

# Multipart via the transfer manager: 12 MiB in 5 MiB parts.
big = os.path.join(work, "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(12 << 20))
config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
s3.upload_file(big, "uploads", "big.bin", Config=config)
etag = s3.head_object(Bucket="uploads", Key="big.bin")["ETag"].strip('"')
check(etag.endswith("-3"), "multipart ETag has the part count")
with open(big, "rb") as f:
    data = f.read()
parts = [hashlib.md5(data[i:i + (5 << 20)]).digest() for i in range(0, len(data), 5 << 20)]
check(etag == hashlib.md5(b"".join(parts)).hexdigest() + "-3", "multipart ETag as S3 computes it")
back = os.path.join(work, "big.back")
s3.download_file("uploads", "big.bin", back)
with open(back, "rb") as f:
    check(hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest(), "multipart round trip")

# Low-level multipart: list parts, abort.
mpu = s3.create_multipart_upload(Bucket="uploads", Key="aborted")
s3.upload_part(Bucket="uploads", Key="aborted", UploadId=mpu["UploadId"], PartNumber=1, Body=b"x" * 100)
listed = s3.list_parts(Bucket="uploads", Key="aborted", UploadId=mpu["UploadId"])
check([p["PartNumber"] for p in listed["Parts"]] == [1], "list parts")
s3.abort_multipart_upload(Bucket="uploads", Key="aborted", UploadId=mpu["UploadId"])
check(error_code(lambda: s3.list_parts(Bucket="uploads", Key="aborted", UploadId=mpu["UploadId"])) == "NoSuchUpload", "aborted upload is gone")

# Listing with delimiter and continuation tokens.
for i in range(7):
    s3.put_object(Bucket="uploads", Key=f"photos/2024/{i}.jpg", Body=b"j")
s3.put_object(Bucket="uploads", Key="photos/cover.jpg", Body=b"c")
root = s3.list_objects_v2(Bucket="uploads", Delimiter="/")
check(sorted(p["Prefix"] for p in root["CommonPrefixes"]) == ["notes/", "photos/"], "common prefixes")
check([o["Key"] for o in root["Contents"]] == ["big.bin"], "root objects")
keys, token, pages = [], None, 0
while True:
    kw = {"Bucket": "uploads", "Prefix": "photos/2024/", "MaxKeys": 3}
    if token:
        kw["ContinuationToken"] = token
    page = s3.list_objects_v2(**kw)
    pages += 1
    keys += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
check(pages == 3 and keys == [f"photos/2024/{i}.jpg" for i in range(7)], "paginated listing")
paginator = s3.get_paginator("list_objects_v2")
total = sum(len(p.get("Contents", [])) for p in paginator.paginate(Bucket="uploads", PaginationConfig={"PageSize": 2}))
check(total == 10, "paginator sees every object once")

# Copy, with and without replacing metadata.
s3.copy_object(Bucket="uploads", Key="notes/copy.txt", CopySource={"Bucket": "uploads", "Key": "notes/hello.txt"})
check(s3.get_object(Bucket="uploads", Key="notes/copy.txt")["Metadata"] == {"owner": "ada"}, "copy keeps metadata")
s3.copy_object(Bucket="uploads", Key="notes/copy2.txt", CopySource="uploads/notes/hello.txt",
               MetadataDirective="REPLACE", Metadata={"owner": "grace"}, ContentType="text/markdown")
c2 = s3.get_object(Bucket="uploads", Key="notes/copy2.txt")
check(c2["Metadata"] == {"owner": "grace"} and c2["ContentType"] == "text/markdown", "copy replaces metadata")

# Presigned GET works without credentials; an expired one is refused.
url = s3.generate_presigned_url("get_object", Params={"Bucket": "uploads", "Key": "notes/hello.txt"}, ExpiresIn=60)
with urllib.request.urlopen(url) as r:
    check(r.read() == body, "presigned GET")
expired = s3.generate_presigned_url("get_object", Params={"Bucket": "uploads", "Key": "notes/hello.txt"}, ExpiresIn=1)
time.sleep(2)
try:
    urllib.request.urlopen(expired)
    check(False, "expired presigned URL refused")
except urllib.error.HTTPError as e:
    check(e.code == 403, "expired presigned URL refused")
# SigV4 query signing too (boto3 presigns with SigV2 unless told otherwise).
v4 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
url4 = v4.generate_presigned_url("get_object", Params={"Bucket": "uploads", "Key": "notes/hello.txt"}, ExpiresIn=60)
check("X-Amz-Signature=" in url4, "SigV4 presigned URL")
with urllib.request.urlopen(url4) as r:
    check(r.read() == body, "SigV4 presigned GET")
put4 = v4.generate_presigned_url("put_object", Params={"Bucket": "uploads", "Key": "notes/presigned.txt"}, ExpiresIn=60)
req = urllib.request.Request(put4, data=b"via presigned PUT", method="PUT", headers={"Content-Type": "text/plain"})
urllib.request.urlopen(req).read()
check(s3.get_object(Bucket="uploads", Key="notes/presigned.txt")["Body"].read() == b"via presigned PUT", "SigV4 presigned PUT")
tampered = url.replace("notes/hello.txt", "notes/copy.txt")
try:
    urllib.request.urlopen(tampered)
    check(False, "tampered presigned URL refused")
except urllib.error.HTTPError as e:
    check(e.code == 403, "tampered presigned URL refused")

# Wrong secret, unsigned request.
bad = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key="x" * 40,
                   region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
check(error_code(lambda: bad.list_buckets()) == "SignatureDoesNotMatch", "wrong secret")
unknown = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="NMBUNKNOWNKEY0000000", aws_secret_access_key=secret,
                       region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
check(error_code(lambda: unknown.list_buckets()) == "InvalidAccessKeyId", "unknown key")
try:
    urllib.request.urlopen(f"{endpoint}/uploads/notes/hello.txt")
    check(False, "unsigned request refused")
except urllib.error.HTTPError as e:
    check(e.code == 403, "unsigned request refused")

# Malformed XML in a (signed) DeleteObjects body: a clean 400, nothing deleted.
def break_body(request, **_):
    request.data = b"<Delete><Object><Key>notes/hello.txt"
    for h in list(request.headers.keys()):
        if h.lower() in ("content-md5", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm", "content-length"):
            del request.headers[h]

s3.meta.events.register("before-sign.s3.DeleteObjects", break_body)
code = error_code(lambda: s3.delete_objects(Bucket="uploads", Delete={"Objects": [{"Key": "notes/hello.txt"}]}))
s3.meta.events.unregister("before-sign.s3.DeleteObjects", break_body)
check(code == "MalformedXML", f"malformed XML refused ({code})")
check(s3.head_object(Bucket="uploads", Key="notes/hello.txt")["ContentLength"] == len(body), "nothing deleted")

# DeleteObjects, then the bucket.
check(error_code(lambda: s3.delete_bucket(Bucket="uploads")) == "BucketNotEmpty", "non-empty bucket")
every = [o["Key"] for p in paginator.paginate(Bucket="uploads") for o in p.get("Contents", [])]
resp = s3.delete_objects(Bucket="uploads", Delete={"Objects": [{"Key": k} for k in every]})
check(len(resp["Deleted"]) == len(every), "delete objects")
check(s3.list_objects_v2(Bucket="uploads")["KeyCount"] == 0, "bucket empty")
s3.delete_bucket(Bucket="uploads")
check(s3.list_buckets()["Buckets"] == [], "bucket deleted")
print("boto3 walkthrough passed")
