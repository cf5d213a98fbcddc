"""A raw HTTP/1.1 client for tests/server/test_raw_http_fuzz.py: a case's bytes sent on a fresh
TCP connection as they are, the server's answers read back and framed by hand (no HTTP library
would send what the fuzzer does, or read what a broken server might answer)."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

TIMEOUT = 10.0  # seconds a case may wait for its answers
SENTINEL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def show(data: bytes) -> str:
    """``data`` as a Python expression, runs of one byte longer than 32 written as a product."""
    parts: list[str] = []
    for run in re.finditer(rb"(.)\1{32,}|(?:(?!(.)\2{32}).)+", data, re.S):
        chunk = run.group(0)
        parts.append(f"{chunk[:1]!r} * {len(chunk)}" if run.group(1) is not None else repr(chunk))
    return " + ".join(parts) or "b''"


@dataclass(frozen=True)
class Case:
    """What one exchange sends (the shapes are test_raw_http_fuzz's docstring's)."""

    shape: str  # "framed", "pipelined", "incomplete", "expect"
    framing: str  # how its bodies are framed ("length", "chunked", "none", "conflict"; "+" between requests)
    data: bytes  # sent at once (the head alone, for "expect")
    methods: tuple[bytes, ...]  # of the requests in ``data``, in order (answers to HEAD have no body)
    later: bytes = b""  # "expect": sent after a 100 Continue
    upgrade: bool = False  # its last request is an upgrade: no sentinel after it

    def __repr__(self) -> str:  # the exact bytes, as a reproducer
        later = f", later={show(self.later)}" if self.later else ""
        return f"Case({self.shape!r}, {self.framing!r}, data={show(self.data)}{later})"


class Cut(AssertionError):
    """The connection ended inside an answer (after its status line when ``status`` is set)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]  # lower-cased name -> its last value
    body: bytes


class Stream:
    """The server's bytes on one connection, read as HTTP/1.x answers before ``deadline``
    (TimeoutError past it); AssertionError on bytes that are not an HTTP answer, Cut on an
    answer the connection ended inside of."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buf, self.ended = sock, deadline, b"", False

    def answer(self, head_only: bool = False) -> Answer | None:
        """The next final answer (a ``100 Continue`` is skipped); None when the connection ended
        before one began. ``head_only``: the answer to a HEAD."""
        while True:
            head = self._until(b"\r\n\r\n")
            if head is None:
                if self.buf:
                    raise Cut(f"the connection ended inside an answer's head: {self.buf[:300]!r}")
                return None
            line, *lines = head.split(b"\r\n")
            match = re.fullmatch(rb"HTTP/1\.[01] ([1-5]\d\d)(?: [^\r\n]*)?", line)
            assert match, f"not an HTTP answer: {head[:300]!r}"
            headers: dict[bytes, bytes] = {}
            for item in lines:
                name, colon, value = item.partition(b":")
                assert colon, f"not a header line in an answer: {item[:300]!r}"
                headers[name.strip().lower()] = value.strip()
            status = int(match.group(1))
            if status != 100:
                return Answer(status, headers, self._body(status, headers, head_only))

    def continued(self, head_only: bool) -> Answer | None:
        """After a head with ``Expect: 100-continue``: None for a ``100 Continue``, else the final answer."""
        head = self._until(b"\r\n\r\n")
        assert head is not None, f"the connection ended with neither 100 Continue nor an answer: {self.buf[:300]!r}"
        if re.match(rb"HTTP/1\.[01] 100(?: |$)", head.split(b"\r\n")[0]):
            return None
        self.buf = head + b"\r\n\r\n" + self.buf
        return self.answer(head_only)

    def _body(self, status: int, headers: dict[bytes, bytes], head_only: bool) -> bytes:
        if head_only or status in (204, 304):
            # no body, but a 400 of an unparsable HEAD (its method never read) may have one: what
            # comes before the close is its body
            return self._rest() if headers.get(b"connection") == b"close" else b""
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = b""
            while (size_line := self._until(b"\r\n")) is not None:
                digits = size_line.split(b";")[0].strip()
                assert re.fullmatch(rb"[0-9A-Fa-f]{1,16}", digits), f"not a chunk size: {size_line[:100]!r}"
                size = int(digits, 16)
                if size == 0:
                    while self._until(b"\r\n") not in (None, b""):  # trailer lines, then an empty one
                        pass
                    return body
                part = self._take(size + 2)
                if part is None:
                    break
                body += part[:-2]
            raise Cut(f"the connection ended inside a chunked body: {body[:300]!r}", status)
        if b"content-length" in headers:
            body = self._take(int(headers[b"content-length"]))
            if body is None:
                raise Cut(f"the connection ended inside a body of {headers[b'content-length']!r} bytes", status)
            return body
        return self._rest()

    def _more(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:  # closed with bytes of ours unread: an end, like EOF
            chunk = b""
        if not chunk:
            self.ended = True
            return False
        self.buf += chunk
        return True

    def _until(self, mark: bytes) -> bytes | None:
        while (at := self.buf.find(mark)) < 0:
            if self.ended or not self._more():
                return None
        out, self.buf = self.buf[:at], self.buf[at + len(mark):]  # fmt: skip
        return out

    def _take(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if self.ended or not self._more():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _rest(self) -> bytes:
        while not self.ended and self._more():
            pass
        out, self.buf = self.buf, b""
        return out


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed early: read on
        sock.sendall(data)


def exchange(address: tuple[str, int], case: Case) -> list[Answer]:
    """Send ``case`` on a fresh connection; the answers that came back, in order (TimeoutError
    when they do not end within TIMEOUT)."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        stream = Stream(sock, time.monotonic() + TIMEOUT)
        heads = [m == b"HEAD" for m in case.methods]
        if case.shape == "expect":
            _send(sock, case.data)
            final = stream.continued(heads[0])
            if final is not None:
                return [final]
            _send(sock, case.later if case.upgrade else case.later + SENTINEL)
            due = 1 if case.upgrade else 2
        elif case.shape == "incomplete":
            _send(sock, case.data)
            with contextlib.suppress(OSError):  # not connected: answered and closed already
                sock.shutdown(socket.SHUT_WR)
            due = len(heads) + 1
        else:
            _send(sock, case.data if case.upgrade else case.data + SENTINEL)
            due = len(heads) + (0 if case.upgrade else 1)
        answers: list[Answer] = []
        try:
            while len(answers) < due and (answer := stream.answer(len(answers) < len(heads) and heads[len(answers)])):
                answers.append(answer)
        except Cut as cut:  # after our half-close the server may take us for gone, even mid-answer
            if case.shape != "incomplete":
                raise
            if cut.status is not None:
                answers.append(Answer(cut.status, {}, b""))
        return answers


def healthz(address: tuple[str, int]) -> int:
    """The status of GET /healthz on a fresh connection (0: no answer)."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(SENTINEL)
        answer = Stream(sock, time.monotonic() + TIMEOUT).answer()
    return 0 if answer is None else answer.status


class Tracebacks(logging.Handler):
    """The server's log records that carry a traceback (uvicorn's "Exception in ASGI
    application", the app's ``log.exception``), each with the case running when it came."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.current: Case | None = None
        self.found: list[tuple[Case | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.found.append((self.current, f"{record.getMessage()}: {record.exc_info[1]!r}"))


@contextlib.contextmanager
def tracebacks() -> Iterator[Tracebacks]:
    """Tracebacks the server logs in the block (uvicorn.error's records reach the uvicorn logger)."""
    handler = Tracebacks()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "packager")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def counted(client: httpx.Client) -> dict[str, float]:
    """The request counts of the server's /metrics by series (route, method, status), but those of
    /metrics itself."""
    text = client.get("/metrics").text
    found = re.findall(r"^(packager_http_requests_total\{.*\}) (\S+)$", text, re.M)  # greedy: routes hold {m}
    return {series: float(n) for series, n in found if 'route="/metrics"' not in series}


def server_errors(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The 5xx answers counted between two ``counted`` (sent, or counted for a client gone)."""
    return {series: n - before.get(series, 0) for series, n in after.items()
            if re.search(r'status="5\d\d"', series) and n > before.get(series, 0)}  # fmt: skip


def settled(client: httpx.Client, before: dict[str, float], quiet: float = 0.0) -> dict[str, float]:
    """``counted`` once the server has counted a request since ``before`` and then nothing for
    ``quiet`` seconds (or TIMEOUT seconds on): its handlers of those requests have ended."""
    deadline = time.monotonic() + TIMEOUT
    now = counted(client)
    while time.monotonic() < deadline:
        if now != before:
            time.sleep(quiet)
            if (later := counted(client)) == now:
                break
            now = later
        else:
            time.sleep(0.05)
            now = counted(client)
    return now
