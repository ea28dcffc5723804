"""Starts a presigned PUT of 10 MiB, sends 1 MiB of it and hangs up; then checks that the key
does not exist. Usage: python disconnect.py ENDPOINT ACCESS_KEY SECRET_KEY"""

import socket
import sys
import time
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, access, secret = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="partial")
url = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "partial", "Key": "half.bin"}, ExpiresIn=60))
sock = socket.create_connection((url.hostname, url.port))
head = (f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Length: {10 << 20}\r\n\r\n").encode()
sock.sendall(head + b"x" * (1 << 20))
time.sleep(0.2)
sock.close()
try:
    s3.head_object(Bucket="partial", Key="half.bin")
    print("FAILED: a partial upload became visible", file=sys.stderr)
    sys.exit(1)
except ClientError as e:
    assert e.response["Error"]["Code"] in ("404", "NoSuchKey"), e.response
# A complete presigned PUT works.
import http.client
whole = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "partial", "Key": "whole.bin"}, ExpiresIn=60))
conn = http.client.HTTPConnection(whole.hostname, whole.port)
conn.request("PUT", f"{whole.path}?{whole.query}", body=b"y" * 1000)
resp = conn.getresponse()
body = resp.read()
assert resp.status == 200, (resp.status, body)
assert s3.head_object(Bucket="partial", Key="whole.bin")["ContentLength"] == 1000
print("disconnect check passed")
