#!/usr/bin/env python3
"""Writes the committed event-stream vectors in this folder.

Independent of the Rust encoder on purpose: framing and CRCs come from Python's struct and
zlib.crc32, so a bug shared by our encoder and decoder cannot hide. Run from this folder:
`python3 generate.py`. The expected outcome of each file is in README.md.
"""
import struct
import zlib


def string_header(name, value):
    name, value = name.encode(), value.encode()
    return bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value


def frame(headers, payload, total_override=None, headers_len_override=None):
    total = 16 + len(headers) + len(payload)
    total = total if total_override is None else total_override
    hlen = len(headers) if headers_len_override is None else headers_len_override
    prelude = struct.pack(">II", total, hlen)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def kiro_event(event_type, payload):
    headers = (
        string_header(":event-type", event_type)
        + string_header(":content-type", "application/json")
        + string_header(":message-type", "event")
    )
    return frame(headers, payload)


def with_raw_headers(raw_headers, payload=b"{}"):
    return frame(raw_headers, payload)


VECTORS = {
    "valid_text_event": kiro_event("assistantResponseEvent", '{"content":"héllo","modelId":"auto"}'.encode()),
    "valid_two_frames": kiro_event("assistantResponseEvent", b'{"content":"a"}')
    + kiro_event("contextUsageEvent", b'{"contextUsagePercentage":2.5}'),
    "valid_exception_frame": frame(
        string_header(":exception-type", "ThrottlingException")
        + string_header(":content-type", "application/json")
        + string_header(":message-type", "exception"),
        b'{"message":"Too many requests"}',
    ),
    "valid_empty_everything": frame(b"", b""),
    # Prelude CRC field flipped.
    "invalid_prelude_crc": (lambda f: f[:8] + bytes([f[8] ^ 0xFF]) + f[9:])(
        kiro_event("assistantResponseEvent", b'{"content":"x"}')
    ),
    # Last payload byte flipped, CRCs left as they were.
    "invalid_message_crc": (lambda f: f[:-5] + bytes([f[-5] ^ 0x01]) + f[-4:])(
        kiro_event("assistantResponseEvent", b'{"content":"x"}')
    ),
    # 4 GiB - 1 announced with a valid prelude CRC: must be rejected from the prelude alone.
    "invalid_frame_too_large_4gib": frame(b"", b"", total_override=0xFFFFFFFF)[:12] + b"x" * 20,
    "invalid_frame_too_small": frame(b"", b"", total_override=15)[:12] + b"\x00" * 4,
    "invalid_headers_length_does_not_fit": frame(b"", b"0123", headers_len_override=5),
    "invalid_header_value_type": with_raw_headers(b"\x01a\x0a"),
    "invalid_header_name_not_utf8": with_raw_headers(b"\x02\xc3\x28\x00"),
    "invalid_header_string_not_utf8": with_raw_headers(b"\x01s\x07\x00\x01\xff"),
    "invalid_header_name_cut_off": with_raw_headers(b"\x09abc", b""),
    "invalid_header_value_cut_off": with_raw_headers(b"\x01s\x07\x00\x09abc", b""),
    "invalid_header_uuid_cut_off": with_raw_headers(b"\x01u\x09" + b"\x00" * 8, b""),
    "invalid_truncated_at_end": kiro_event("assistantResponseEvent", b'{"content":"x"}')[:-3],
}

for name, data in VECTORS.items():
    with open(name, "wb") as out:
        out.write(data)
