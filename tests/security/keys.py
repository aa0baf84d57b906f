"""Finding private-key material in any text: the reusable check of the key-leak tests.

Use `assert_no_key_material(text, key_pem)` on whatever a component emits (log records, plan
output, status patches, Events, the metrics exposition…), and `capture_all_logs()` to collect
every log record of every logger at DEBUG while it runs::

    with capture_all_logs() as logs:
        run_the_thing()
    assert_no_key_material(logs.text, KEY_PEM, where="operator logs")

What counts as key material:

* a PEM private-key armour line (`-----BEGIN … PRIVATE KEY-----`, `-----END …`): a key, any
  key, was printed. A message merely naming the block ("no '-----BEGIN … PRIVATE KEY-----'
  block found", with an ellipsis) is not armour;
* any base64 body line of `key_pem` (the 64-character lines, and a final line of 16 or more
  characters) that holds private bytes, found anywhere: raw, inside JSON or YAML, in a repr, or
  joined without newlines. Lines that only encode the embedded public key (EC and RSA PKCS#8
  keys carry it) are not searched: the certificate holds the same bytes;
* the base64 of the whole PEM, as a Secret's `data.tls.key` holds it (a piece encoding the
  first secret body line).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

KEY_ARMOUR = re.compile(r"-----(?:BEGIN|END) [A-Z0-9 ]*PRIVATE KEY-----")
MIN_FRAGMENT = 16


def _public_der(key_pem: str) -> bytes:
    """The key's public half (SubjectPublicKeyInfo DER), or b"" when the key cannot be read
    (encrypted, say): then every body line counts as secret."""
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return b""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_public(line: str, public: bytes) -> bool:
    # A body line is 48 bytes of DER, aligned: decodable on its own. PKCS#8 EC and RSA keys embed
    # their public key, which certificates carry too; such a line is not a secret.
    try:
        raw = base64.b64decode(line + "=" * (-len(line) % 4))
    except ValueError:
        return False
    return bool(public) and raw in public


def key_fragments(key_pem: str) -> list[str]:
    """The substrings of `key_pem` (and of its base64) that must never be found elsewhere:
    every body line holding private bytes, and a piece of the base64 of the whole PEM."""
    public = _public_der(key_pem)
    lines = [line.strip() for line in key_pem.strip().splitlines()]
    body = [line for line in lines if line and not line.startswith("-----")]
    fragments = [
        line for line in body if len(line) >= MIN_FRAGMENT and not _is_public(line, public)
    ]
    if not fragments:
        raise ValueError("not a PEM private key with a secret base64 body")
    # The same first secret line inside base64(PEM), as a Secret's data holds it: 36 bytes of
    # the line, starting on a 3-byte boundary of the PEM so that the encoding is fixed.
    start = key_pem.index(fragments[0])
    first_group = -(-start // 3)
    size = min(36, (start + len(fragments[0]) - 3 * first_group) // 3 * 3)
    if size >= 12:
        encoded = base64.b64encode(key_pem.encode()).decode()
        fragments.append(encoded[4 * first_group : 4 * first_group + size // 3 * 4])
    return fragments


def find_key_material(text: str, key_pem: str | None = None) -> list[str]:
    """Where `text` holds key material: descriptions without the material itself. Without
    `key_pem`, only PEM private-key armour is looked for."""
    found = [f"PEM private-key armour at offset {m.start()}" for m in KEY_ARMOUR.finditer(text)]
    if key_pem is not None:
        for number, fragment in enumerate(key_fragments(key_pem), start=1):
            position = text.find(fragment)
            if position >= 0:
                found.append(f"key fragment {number} ({len(fragment)} chars) at offset {position}")
    return found


def contains_key_material(text: str, key_pem: str | None = None) -> bool:
    return bool(find_key_material(text, key_pem))


def assert_no_key_material(text: str, *key_pems: str, where: str = "text") -> None:
    """Fail, naming what was found and where (never quoting it), if `text` holds material of
    any of `key_pems` or any PEM private-key armour."""
    found = find_key_material(text)
    for key_pem in key_pems:
        found += [item for item in find_key_material(text, key_pem) if item not in found]
    if found:
        context = []
        for item in found:
            offset = int(item.rsplit(" ", 1)[-1])
            # Show what precedes the material: enough to find the culprit, not the key.
            context.append(f"{item}, after {text[max(0, offset - 80):offset]!r}")
        raise AssertionError(f"key material in {where}:\n  " + "\n  ".join(context))


# --- capturing every log record ----------------------------------------------------------------


class _ListHandler(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.records = records
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # format() also renders exc_info and stack_info: tracebacks are searched too.
        self.records.append(self.format(record))


@dataclass
class CapturedLogs:
    records: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.records)

    def from_logger(self, prefix: str) -> list[str]:
        return [record for record in self.records if record.split(" ", 2)[1].startswith(prefix)]


@contextlib.contextmanager
def capture_all_logs() -> Iterator[CapturedLogs]:
    """Every record of every logger, at DEBUG, on a root handler; levels are restored after.
    Loggers created while capturing inherit DEBUG from the root."""
    captured = CapturedLogs()
    handler = _ListHandler(captured.records)
    root = logging.getLogger()
    loggers = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled, logger.propagate) for logger in loggers]
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.propagate = True
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for logger, level, disabled, propagate in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            logger.propagate = propagate
