"""MJPEG over HTTP (``multipart/x-mixed-replace``), as ESP32 mouth cameras send it.

Parsed here with ``http.client`` rather than ``cv2.VideoCapture(url)``: FFmpeg hides
connection errors, blocks for long timeouts and cannot tell a corrupt part from a lost
stream. ESP32 firmware writes ``--boundary`` then part headers (usually with a
``Content-Length``) then the JPEG. We use the length when present so a frame is handed on
as soon as its last byte arrives, not when the next boundary does; the boundary is still
searched inside each body, so a length that lies only costs the frame it belongs to.
"""
from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import cv2
import numpy as np

from vrfer.core.errors import SourceError

MAX_PART_BYTES = 16 * 1024 * 1024  # larger claims are corrupt headers, not frames
MAX_HEADER_BYTES = 8 * 1024
_READ_CHUNK = 64 * 1024
_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_LENGTH_RE = re.compile(rb"content-length\s*:\s*(\d+)$", re.IGNORECASE)


class StreamEnded(Exception):
    """The server closed the connection (or sent the closing boundary)."""


@dataclass
class Connection:
    """An open MJPEG response. ``sock`` is kept so another thread can unblock a read."""

    conn: http.client.HTTPConnection
    response: http.client.HTTPResponse
    sock: socket.socket
    boundary: bytes

    def read1(self, n: int = _READ_CHUNK) -> bytes:
        return self.response.read1(n)

    def abort(self) -> None:
        """Unblock a reader in another thread: a blocked ``recv`` returns at once."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.abort()
        self.response.close()
        self.conn.close()


def reason(err: BaseException) -> str:
    """A few words for a network error, for one-line messages."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(err, socket.gaierror):
        return "unknown host"
    if isinstance(err, ssl.SSLError):
        return f"TLS error: {err.reason or err}"
    if isinstance(err, ConnectionResetError):
        return "connection reset"
    if isinstance(err, http.client.HTTPException):
        return f"bad HTTP response: {type(err).__name__}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err) or type(err).__name__


def connect(url: str, connect_timeout: float = 3.0, read_timeout: float = 5.0) -> Connection:
    """Open ``url`` and check that it is a multipart MJPEG stream.

    Raises SourceError with one line, e.g. ``http://127.0.0.1:9/ does not answer
    (connection refused)``. ``connect_timeout`` bounds the TCP connect and the wait for the
    response headers; ``read_timeout`` then bounds each read of the stream.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url} is not an http(s):// URL")
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"{url} has an invalid port") from None
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, port, timeout=connect_timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = {"Accept": "multipart/x-mixed-replace, image/jpeg", "Connection": "close"}
    if parts.username is not None:
        cred = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    try:
        conn.connect()
        sock = conn.sock
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as err:
        conn.close()
        raise SourceError(f"{url} does not answer ({reason(err)})") from None
    if response.status != 200:
        conn.close()
        raise SourceError(f"{url} answered HTTP {response.status} {response.reason}".rstrip())
    ctype = response.getheader("Content-Type", "") or ""
    boundary = _boundary(ctype)
    if boundary is None:
        conn.close()
        shown = ctype or "no Content-Type"
        raise SourceError(f"{url} is not an MJPEG stream ({shown}; expected multipart/x-mixed-replace)")
    sock.settimeout(read_timeout)
    return Connection(conn, response, sock, boundary)


def _boundary(content_type: str) -> bytes | None:
    """The boundary token of a multipart Content-Type, without any leading ``--``."""
    if not content_type.lower().startswith("multipart/"):
        return None
    match = re.search(r'boundary\s*=\s*"?([^";]+)"?', content_type, re.IGNORECASE)
    if match is None:
        return None
    token = match.group(1).strip()
    # Some servers declare "--frame" and also write "--frame" as the delimiter line.
    return token.lstrip("-").encode("latin-1") or None


class MultipartReader:
    """Splits a multipart byte stream into part bodies.

    ``read1(n)`` returns up to ``n`` bytes, ``b""`` at end of stream. ``next_part()``
    returns the next body (possibly corrupt: checking it is the caller's job) or raises
    StreamEnded; bytes outside any part are dropped and counted in ``garbage_bytes``.
    After StreamEnded, ``partial`` tells whether the stream stopped inside a part.
    """

    def __init__(self, read1: Callable[[int], bytes], boundary: bytes) -> None:
        self._read1 = read1
        self._token = boundary
        self._delim = b"--" + boundary
        self._buf = bytearray()
        self._synced = False  # True right after a delimiter line has been consumed
        self.garbage_bytes = 0
        self.partial = False

    def _fill(self) -> None:
        chunk = self._read1(_READ_CHUNK)
        if not chunk:
            raise StreamEnded()
        self._buf += chunk

    def _line(self) -> bytes:
        """Pop one line (without its line end); a line longer than the header limit is cut."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                return line.rstrip(b"\r")
            if len(self._buf) > MAX_HEADER_BYTES:
                line = bytes(self._buf)
                self._buf.clear()
                return line
            self._fill()

    def _skip_to_delimiter(self) -> None:
        """Drop everything up to and including the next delimiter line."""
        while True:
            at = self._buf.find(self._delim)
            if at < 0:
                keep = len(self._delim) + 4  # the delimiter may be split across two reads
                if len(self._buf) > keep:
                    self.garbage_bytes += len(self._buf) - keep
                    del self._buf[:len(self._buf) - keep]
                self._fill()
                continue
            self.garbage_bytes += _delimiter_start(self._buf, at)
            del self._buf[:at]
            line = self._line()
            if _is_delimiter(line, self._token):
                if line.rstrip().endswith(b"--"):
                    raise StreamEnded()  # closing delimiter "--token--"
                return
            self.garbage_bytes += len(line)  # "--token" inside other bytes: keep looking

    def next_part(self) -> bytes:
        while True:
            self.partial = False
            if not self._synced:
                self._skip_to_delimiter()
            self._synced = False
            self.partial = True
            length: int | None = None
            header_bytes = 0
            restart = False
            while True:
                line = self._line()
                if not line:
                    break
                if _is_delimiter(line, self._token):  # an empty part: start again
                    self._synced = True
                    restart = True
                    break
                header_bytes += len(line)
                if header_bytes > MAX_HEADER_BYTES:
                    restart = True
                    break
                match = _LENGTH_RE.match(line.strip())
                if match is not None:
                    value = int(match.group(1))
                    length = value if 0 < value <= MAX_PART_BYTES else None
            if restart:
                continue
            if length is not None:
                while len(self._buf) < length:
                    self._fill()
                body = bytes(self._buf[:length])
                cut = body.find(self._delim)
                if cut >= 0:  # the length lied: the next part starts inside this body
                    end = _delimiter_start(body, cut)
                    del self._buf[:end]
                    self.partial = False
                    return body[:end]
                del self._buf[:length]
                self.partial = False
                return body
            # No length: the body runs to the next delimiter.
            searched = 0
            while True:
                cut = self._buf.find(self._delim, searched)
                if cut >= 0:
                    end = _delimiter_start(self._buf, cut)
                    body = bytes(self._buf[:end])
                    del self._buf[:end]
                    self.partial = False
                    return body
                searched = max(0, len(self._buf) - len(self._delim))
                if len(self._buf) > MAX_PART_BYTES:
                    self.garbage_bytes += len(self._buf)
                    self._buf.clear()
                    break
                self._fill()


def _is_delimiter(line: bytes, token: bytes) -> bool:
    """``--token`` or ``--token--`` (closing), tolerating extra dashes and trailing spaces."""
    stripped = line.strip()
    return stripped.startswith(b"--") and stripped.strip(b"-") == token


def _delimiter_start(buf: bytes | bytearray, token_at: int) -> int:
    """Where the delimiter found at ``token_at`` ("--token") begins, with its line end."""
    start = token_at
    while start > 0 and buf[start - 1] == 0x2D:  # servers that write extra dashes
        start -= 1
    if start > 0 and buf[start - 1] == 0x0A:
        start -= 1
        if start > 0 and buf[start - 1] == 0x0D:
            start -= 1
    return start


def jpeg_complete(data: bytes) -> bool:
    """True when ``data`` starts with SOI and ends with EOI (trailing padding allowed).

    libjpeg decodes a truncated JPEG "successfully", filling the rest with grey, so
    ``imdecode`` alone cannot be trusted to reject a cut-off frame.
    """
    if not data.startswith(_SOI):
        return False
    return data.rstrip(b"\r\n\x00 ").endswith(_EOI)


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """A BGR image, or None for a truncated or corrupt JPEG."""
    if not jpeg_complete(data):
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return image
