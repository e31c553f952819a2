"""Real-shaped contact-center content for the demo and tests, made with the standard library.

Nothing here is real customer data: the audio is tones and the transcript is scripted.
"""

from __future__ import annotations

import io
import json
import math
import struct
import uuid
import wave
from datetime import datetime, timedelta, timezone


def call_recording_wav(seconds: float = 3.0, rate: int = 8000) -> bytes:
    """A stereo 16-bit PCM WAV like Amazon Connect's: customer on the left, agent on the right."""
    frames = int(seconds * rate)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        samples = bytearray()
        for n in range(frames):
            t = n / rate
            # Each side "speaks" in alternating half-second turns.
            customer = 0.4 * math.sin(2 * math.pi * 440 * t) if int(t * 2) % 2 == 0 else 0.0
            agent = 0.4 * math.sin(2 * math.pi * 660 * t) if int(t * 2) % 2 == 1 else 0.0
            samples += struct.pack("<hh", int(customer * 32767), int(agent * 32767))
        wav.writeframes(bytes(samples))
    return out.getvalue()


def chat_transcript(account_id: str, instance_id: str, contact_id: str, started: datetime | None = None) -> bytes:
    """An Amazon Connect chat transcript (the JSON Connect writes under ChatTranscripts/)."""
    start = started or datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
    customer, agent, system = "c1a2b3c4-0000-4000-8000-000000000001", "a1b2c3d4-0000-4000-8000-000000000002", "s1"

    def at(seconds: int) -> str:
        return (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    items = [
        {"AbsoluteTime": at(0), "ContentType": "application/vnd.amazonaws.connect.event.participant.joined",
         "Id": "e-1", "Type": "EVENT", "ParticipantId": customer, "DisplayName": "Customer", "ParticipantRole": "CUSTOMER"},
        {"AbsoluteTime": at(2), "Content": "Hello, I would like to update the card on my account.", "ContentType": "text/plain",
         "Id": "m-1", "Type": "MESSAGE", "ParticipantId": customer, "DisplayName": "Customer", "ParticipantRole": "CUSTOMER"},
        {"AbsoluteTime": at(5), "ContentType": "application/vnd.amazonaws.connect.event.participant.joined",
         "Id": "e-2", "Type": "EVENT", "ParticipantId": agent, "DisplayName": "Agent", "ParticipantRole": "AGENT"},
        {"AbsoluteTime": at(9), "Content": "Of course. Can you confirm the phone number on file?", "ContentType": "text/plain",
         "Id": "m-2", "Type": "MESSAGE", "ParticipantId": agent, "DisplayName": "Agent", "ParticipantRole": "AGENT"},
        {"AbsoluteTime": at(15), "Content": "+1 206 555 0100", "ContentType": "text/plain",
         "Id": "m-3", "Type": "MESSAGE", "ParticipantId": customer, "DisplayName": "Customer", "ParticipantRole": "CUSTOMER"},
        {"AbsoluteTime": at(20), "ContentType": "application/vnd.amazonaws.connect.event.chat.ended",
         "Id": "e-3", "Type": "EVENT", "ParticipantRole": "SYSTEM", "ParticipantId": system},
    ]
    transcript = {
        "Version": "2019-08-26",
        "AWSAccountId": account_id,
        "InstanceId": instance_id,
        "InitialContactId": contact_id,
        "ContactId": contact_id,
        "Participants": [{"ParticipantId": customer}, {"ParticipantId": agent}],
        "Transcript": items,
    }
    return json.dumps(transcript, indent=2).encode("utf-8")


def contact_lens_voice_analysis(account_id: str, instance_id: str, contact_id: str) -> bytes:
    """Contact Lens conversational analytics output for a call (the JSON it writes under
    Analysis/Voice/): the whole transcript, turn by turn, with sentiment."""
    turns = [
        ("CUSTOMER", 0, 2400, "Hello, I would like to update the card on my account.", "NEUTRAL"),
        ("AGENT", 2900, 5200, "Of course. Can you confirm the phone number on file?", "POSITIVE"),
        ("CUSTOMER", 5800, 7900, "It is +1 206 555 0100.", "NEUTRAL"),
    ]
    analysis = {
        "Version": "1.1.0",
        "AccountId": account_id,
        "Channel": "VOICE",
        "ContentMetadata": {"Output": "Raw", "RedactionTypes": []},
        "JobStatus": "COMPLETED",
        "LanguageCode": "en-US",
        "CustomerMetadata": {"ContactId": contact_id, "InstanceId": instance_id},
        "Participants": [{"ParticipantId": "CUSTOMER", "ParticipantRole": "CUSTOMER"},
                         {"ParticipantId": "AGENT", "ParticipantRole": "AGENT"}],
        "ConversationCharacteristics": {"TotalConversationDurationMillis": 7900,
                                        "Sentiment": {"OverallSentiment": {"AGENT": 2.5, "CUSTOMER": 0.0}}},
        "Transcript": [
            {"Id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{contact_id}/{n}")), "ParticipantId": who,
             "BeginOffsetMillis": begin, "EndOffsetMillis": end, "Content": text, "Sentiment": sentiment}
            for n, (who, begin, end, text, sentiment) in enumerate(turns)
        ],
    }
    return json.dumps(analysis, indent=2).encode("utf-8")


def contact_lens_key(channel: str, contact_id: str, when: datetime, redacted: bool = False) -> str:
    """Where Contact Lens writes its analysis (at the bucket's root, not under the instance's
    prefix): Analysis/<Voice|Chat>/[Redacted/]YYYY/MM/DD/<contact>_analysis[_redacted]_<time>.json."""
    folder, name = ("Redacted/", "analysis_redacted") if redacted else ("", "analysis")
    return f"Analysis/{channel}/{folder}{when:%Y/%m/%d}/{contact_id}_{name}_{when:%Y-%m-%dT%H:%M:%SZ}.json"


def connect_key(prefix: str, alias: str, folder: str, contact_id: str, when: datetime, extension: str) -> str:
    """The key Amazon Connect writes: <prefix><alias>/<folder>/YYYY/MM/DD/<contact>_<YYYYMMDDTHH:MM>_UTC.<ext>."""
    return f"{prefix}{alias}/{folder}/{when:%Y/%m/%d}/{contact_id}_{when:%Y%m%dT%H:%M}_UTC.{extension}"


def contact_event(account_id: str, region: str, instance_id: str, contact_id: str, event_type: str = "INITIATED",
                  phone: str = "+12065550100", attributes: dict[str, str] | None = None,
                  when: datetime | None = None, arn_key: str = "instanceArn") -> dict:
    """An Amazon Connect Contact Event as EventBridge delivers it (`arn_key="instanceARN"`
    gives the spelling of some documentation samples)."""
    moment = when or datetime.now(timezone.utc)
    instance_arn = f"arn:aws:connect:{region}:{account_id}:instance/{instance_id}"
    detail: dict = {
        "contactId": contact_id, "initialContactId": contact_id, "channel": "VOICE", arn_key: instance_arn,
        "initiationMethod": "INBOUND", "eventType": event_type,
        "initiationTimestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "customerEndpoint": {"type": "TELEPHONE_NUMBER", "address": phone},
        "systemEndpoint": {"type": "TELEPHONE_NUMBER", "address": "+18005550199"},
        "queueInfo": {"queueArn": f"{instance_arn}/queue/6c1b5d0e-93f1-4a2c-8f4e-2b7d9a0c3e11", "queueType": "STANDARD"},
    }
    if attributes is not None:
        detail["attributes"] = attributes
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Amazon Connect Contact Event", "source": "aws.connect",
        "account": account_id, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
        "resources": [instance_arn, f"{instance_arn}/contact/{contact_id}"], "detail": detail,
    }
