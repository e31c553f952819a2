"""What enforcing a function's role costs per request on the local stack.

    .venv/bin/python bench/iam_overhead.py [--calls N]

DynamoDB PutItem, the same item and table, side by side in one run: signed with a role's
assumed credentials (every request checked against the role's policies by
`atrest_cli.local.iam_enforcement`) and with the administrator's test credentials (not
checked). Prints both and their ratio; it asserts nothing (tests never time things).
"""

from __future__ import annotations

import argparse
import time
import uuid

import boto3
from botocore.config import Config

from atrest_cli.local.emulator import Emulator
from atrest_cli.local.iam_enforcement import assumed_role_environment, create_role

TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def per_call(client, table: str, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        client.put_item(TableName=table, Item={"pk": {"S": "timing"}})
    return (time.perf_counter() - started) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    with Emulator() as emulator:
        table = f"iam-bench-{uuid.uuid4().hex[:8]}"
        admin = emulator.client("dynamodb")
        admin.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        # A policy of the size of EncryptObject's: 32 statements, the matching one last.
        statements = [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::other-{n}/*"} for n in range(31)]
        statements.append({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": f"arn:aws:dynamodb:*:*:table/{table}"})
        role_arn = create_role(emulator.client("iam"), f"iam-bench-{table}", "/", TRUST,
                               {"bench": {"Version": "2012-10-17", "Statement": statements}}, [])["Arn"]
        credentials = assumed_role_environment(emulator.endpoint, emulator.region, role_arn, "bench")
        role = boto3.session.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials["AWS_SESSION_TOKEN"], region_name=emulator.region,
        ).client("dynamodb", endpoint_url=emulator.endpoint, config=Config(retries={"max_attempts": 1}))
        per_call(role, table, 50), per_call(admin, table, 50)  # warm both
        as_role = min(per_call(role, table, args.calls) for _ in range(3))
        as_admin = min(per_call(admin, table, args.calls) for _ in range(3))
    print(f"PutItem, best of 3 x {args.calls}: as role {as_role * 1000:.3f} ms, as administrator {as_admin * 1000:.3f} ms, "
          f"ratio {as_role / as_admin:.3f} (overhead {(as_role - as_admin) * 1e6:.0f} us per request)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
