"""Test handlers for the local runner: they record what they receive in the results
bucket, and fail on demand (an object key containing "fail" is reported as a batch item
failure, one containing "raise" makes the whole invocation raise; a stream record whose
new image has `fail: N` is reported as failed on its first N deliveries, one with
`raise: true` makes the invocation raise)."""

import collections
import json
import os
import time

import boto3

s3 = boto3.client("s3")  # built at cold start: reads AWS_ENDPOINT_URL from the function's environment
RESULTS_BUCKET = os.environ["RESULTS_BUCKET"]


def _put(key, document):
    s3.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=json.dumps(document).encode())


def _invocation(context):
    return {
        "function_name": context.function_name,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "environment": {
            name: os.environ.get(name)
            for name in ("AWS_LAMBDA_FUNCTION_NAME", "RESULTS_BUCKET", "ITEMS_TABLE", "STACK_REGION", "POWERTOOLS_TRACE_DISABLED")
        },
    }


def record_batch(event, context):
    failures = []
    for record in event["Records"]:
        key = json.loads(record["body"])["detail"]["object"]["key"]
        if "raise" in key:
            raise RuntimeError(f"asked to raise by {key}")
        if "fail" in key:
            _put(f"attempts/{record['messageId']}/{record['attributes']['ApproximateReceiveCount']}", record)
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        _put(f"processed/{record['messageId']}", {"record": record, "invocation": _invocation(context)})
    return {"batchItemFailures": failures}


def record_tick(event, context):
    _put(f"ticks/{context.aws_request_id}", {"event": event, "invocation": _invocation(context)})
    return {"ticked": True, "event": event}


def record_contact_event(event, context):
    if event.get("detail", {}).get("fail"):
        _put(f"contact-attempts/{event['id']}/{context.aws_request_id}", event)
        raise ValueError("asked to fail")
    _put(f"contacts/{event['id']}", {"event": event, "invocation": _invocation(context)})
    return {"recorded": event["id"]}


# Deliveries per stream record (sequence number), for `fail: N`: this runner's warm function keeps count.
_deliveries = collections.Counter()


def record_changes(event, context):
    # Keys in invocation order (the results bucket lists them sorted): nanoseconds first.
    _put(f"changes/{time.time_ns():020d}-{context.aws_request_id}", {"event": event, "invocation": _invocation(context)})
    failures = []
    for record in event["Records"]:
        image = record["dynamodb"].get("NewImage") or {}
        sequence_number = record["dynamodb"]["SequenceNumber"]
        _deliveries[sequence_number] += 1
        if image.get("raise", {}).get("BOOL"):
            raise RuntimeError(f"asked to raise by {record['dynamodb']['Keys']}")
        if _deliveries[sequence_number] <= int(image.get("fail", {}).get("N", "0")):
            failures.append({"itemIdentifier": sequence_number})
    # Last first: Lambda retries from the lowest failed sequence number, not the first one listed.
    return {"batchItemFailures": failures[::-1]}

