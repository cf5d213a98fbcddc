"""Raw bytes a client can send `packager serve` (issue 15, "fuzz what a client can send"): 2,000
generated HTTP/1.1 exchanges on TCP connections to the real server, every answer below 500 and in
bounded time, and GET /healthz answered on a fresh connection after each.

A case is drawn whole: a request line (the routes' methods and paths, then odd ones: percent
escapes, dot segments, absolute and asterisk forms, targets up to 120 kB, bytes httptools refuses,
bad versions), header lines (Host missing or twice, odd casing, huge values, thousands of lines,
obs-fold, Range with odd or huge numbers, the admin token, CORS preflights, Expect, Upgrade) and a
body (device profiles, telemetry batches and rollouts with big numbers, deep nesting, invalid
UTF-8, UTF-16, binary, over the limits) with its framing. What the server owes each shape of case:

- ``framed`` and ``pipelined``: one request, or two or three on one connection, whose framing
  ends within the bytes sent (a length, a chunked body, no body, or Content-Length and
  Transfer-Encoding in conflict with every reading of them ending there), then a ``GET /healthz``
  with ``Connection: close``. At least one answer must come: the server answers the requests in
  order until it closes (after a 400 it cannot frame past, after HTTP/1.0 or ``Connection:
  close``) or has answered the last one. After an upgrade request (``Connection: upgrade`` and
  ``Upgrade``) uvicorn ignores what follows and holds the connection for its keep-alive time, so
  nothing follows it and its answer is the last one read.
- ``incomplete``: a request cut short, or declaring more body than it sends, then a half-close
  (``SHUT_WR``). The server may close without a word (the request never ended: nothing to
  answer) or answer below 500 from what it has (a 400 of a malformed head, a 413 of a declared
  length); it may also close inside an answer it began (uvicorn closes a connection at its
  client's half-close, whatever it was sending: raw_http.Cut). Nothing waits on the server's own
  10 s header and 30 s body timeouts (408s); those have their tests in test_hostile_clients.py.
- ``expect``: a head with ``Expect: 100-continue`` sent alone; the body follows a
  ``100 Continue``, and a final answer instead of one ends the exchange.

Every answer must be a well-framed HTTP/1.x answer within ``TIMEOUT`` seconds (raw_http.Stream)
with a status below 500, and a 4xx of type application/json must have the body
``{"error": {"code", "message"}}``. Over the whole run (``census``, checked when the fuzz test
ends) the server must log no traceback and count no 5xx in /metrics (a 500 for a client gone is
never seen on the wire); 4xx answers of another type are reported as a warning, and the run must
have covered every shape and framing with at least ``CASES`` cases.
"""

from __future__ import annotations

import json
import re
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import pairwise
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_http import TIMEOUT, Case, Stream, Tracebacks, counted, exchange, healthz, server_errors, settled, tracebacks
from server_helpers import Served, served, tokens_file, two_runtime_build

from packager.registry.profile import ACCELERATORS, PLATFORMS
from packager.server.telemetry import EVENTS
from packager.vocab import RUNTIMES

__all__ = ["served", "tokens_file", "two_runtime_build"]  # fixtures, found by name

CASES = 2000
SHAPES = ("framed", "pipelined", "incomplete", "expect")
FRAMINGS = ("length", "chunked", "none", "conflict")


# --- requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: bytes
    target: bytes
    version: bytes
    lines: tuple[bytes, ...]  # header lines, framing ones last
    body: bytes
    framing: str
    eol: bytes = b"\r\n"

    @property
    def head(self) -> bytes:
        eol = self.eol
        return b" ".join(p for p in (self.method, self.target, self.version) if p) + eol + b"".join(
            line + eol for line in self.lines) + eol  # fmt: skip

    @property
    def upgrade(self) -> bool:
        lowered = [line.lower() for line in self.lines]
        return any(line.startswith(b"upgrade:") for line in lowered) and any(
            line.startswith(b"connection:") and b"upgrade" in line for line in lowered)  # fmt: skip


# (method, route) pairs the routes take, and others; "{sha}" is an artifact's sha256
ENDPOINTS = (
    ("POST", "/v1/models/mlp/resolve"), ("POST", "/v1/models/mlp/resolve"), ("POST", "/v1/models/mlp/resolve"),
    ("POST", "/v1/telemetry"), ("POST", "/v1/telemetry"), ("GET", "/v1/models/mlp/manifest"),
    ("GET", "/v1/artifacts/{sha}"), ("GET", "/v1/artifacts/{sha}"), ("HEAD", "/v1/artifacts/{sha}"),
    ("PUT", "/v1/models/mlp/channels/stable"), ("POST", "/v1/models/mlp/channels/stable/rollback"),
    ("POST", "/v1/models/mlp/versions"), ("GET", "/v1/models/mlp/versions/1"),
    ("GET", "/v1/models/mlp/channels/stable"), ("GET", "/v1/tuf/root.json"), ("GET", "/v1/tuf/timestamp.json"),
    ("GET", "/healthz"), ("GET", "/openapi.json"),
    ("GET", "/v1/client.js"), ("GET", "/demo/mlp"), ("GET", "/demo/mlp/"), ("GET", "/metrics"),
    ("GET", "/vendor/tfjs/tf.min.js"), ("OPTIONS", "/v1/models/mlp/resolve"), ("OPTIONS", "/v1/artifacts/{sha}"),
    ("GET", "/v1/models/mlp/resolve"), ("POST", "/v1/models/mlp/manifest"), ("DELETE", "/v1/models/mlp/versions/1"),
    ("PATCH", "/v1/telemetry"), ("GET", "/v1/artifacts/{sha}/"), ("GET", "/"), ("POST", "/healthz"),
)  # fmt: skip
# pieces put into a route's path; the wild ones httptools refuses, or Starlette's URL parsing may
ESCAPES = (b"%00", b"%2F", b"%2f", b"%2e%2e", b"%ff", b"%C0%AE", b"%25", b"%20", b"%0d%0a", b"..", b"/..", b"//",
           b"/./", b";x", b"#f", b"?", b"~", b"%7E", b"%41", b"%2e")  # fmt: skip
WILD_ESCAPES = (b"%", b"%Z", b"%zz", b"%u002e", b"\\", b"\x00", b"\xff", b" ", b"\t", b"\x7f", b"\x80", b"%%")
QUERIES = (b"?channel=stable", b"?channel=candidate", b"?channel=", b"?channel=..%2f", b"?channel=%ff",
           b"?channel=a&channel=b", b"?runtime=tfjs", b"?runtime=x", b"?cloud_url=http://x", b"?=", b"?&&", b"?a",
           b"?channel=" + b"a" * 70, b"?channel=%00", b"?channel=A.B-c_d")  # fmt: skip
WILD_METHODS = (b"TRACE", b"get", b"Post", b"PRI", b"CONNECT", b"M-SEARCH", b"PROPFIND", b"QUERY", b"G ET",
                b"GET\x00", b"", b"GET", b"POST")  # fmt: skip
VERSIONS = (b"HTTP/1.1",) * 5 + (b"HTTP/1.0",)
WILD_VERSIONS = (b"HTTP/1.1", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/9.9", b"http/1.1", b"HTTP/1", b"",
                 b"HTTP/01.1", b"HTTP/1.1 ", b"HTTP/1.1\x00", b"HTTP/1.10")  # fmt: skip
FRAMING_NAMES = (b"content-length", b"transfer-encoding")


def _casings(name: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from([name, name.lower(), name.upper(), name.swapcase()])


def _huge(fill: bytes, low: int, high: int) -> st.SearchStrategy[bytes]:
    return st.integers(low, high).map(lambda n: fill * max(1, n // len(fill)))


def _visible(data: bytes) -> bool:
    """Only what RFC 9110 lets a field value hold without obs-text: VCHAR, space, tab."""
    return all(0x20 <= b <= 0x7E or b == 0x09 for b in data)


def _plain(data: bytes) -> bool:
    """No CR or LF: a generated value cannot start a header line of its own (framing stays as drawn)."""
    return b"\r" not in data and b"\n" not in data


def _header_values(token: bytes, sha: bytes) -> dict[bytes, st.SearchStrategy[bytes]]:
    big = _huge(b"a", 1_000, 200_000)
    ranges = st.one_of(
        st.sampled_from([b"bytes=0-", b"bytes=-5", b"bytes=5-1", b"bytes=0-0", b"bytes=0-0,1-1", b"items=0-1",
                         b"bytes=--1", b"bytes= 1 - 2", b"bytes=", b"bytes=-", b"bytes=0-\xff", b"bytes=\xb9-",
                         b"bytes=1-2-3", b"bytes=-0", b"BYTES=0-1", b"bytes=0-1, 3-4", b"bytes=\t0-1"]),
        st.tuples(st.sampled_from([b"bytes=", b"bytes=-", b"bytes=0-", b"bytes=1"]), st.integers(1, 6000),
                  st.sampled_from([b"-", b"", b"-1", b",0-1"])).map(lambda t: t[0] + b"9" * t[1] + t[2]),
        st.tuples(st.integers(0, 2**70), st.integers(0, 2**70)).map(lambda t: b"bytes=%d-%d" % t),
        st.tuples(st.integers(0, 5000), st.integers(0, 5000)).map(lambda t: b"bytes=%d-%d" % t),
    )  # fmt: skip
    return {
        b"Range": ranges,
        b"If-None-Match": st.one_of(st.sampled_from([b"*", b'"x"', b'W/"x"', b", ,", b'"' + sha + b'"',
                                                     b'W/"' + sha + b'", *']), big),
        b"Authorization": st.sampled_from([b"Bearer " + token] * 3 + [
            b"Bearer", b"Bearer x", b"Basic YTpi", b"bearer " + token, b"Bearer " + token + b" extra",
            b"Bearer " + b"a" * 10_000, b"", b"Bearer \xff", b"Bearer  " + token]),
        b"Content-Type": st.sampled_from([b"application/json"] * 3 + [
            b"application/json; charset=utf-16", b"text/plain", b"multipart/form-data; boundary=x",
            b"application/x-www-form-urlencoded", b"application/x-tar", b"application/gzip", b"", b"a" * 3000]),
        b"Origin": st.sampled_from([b"http://a.example", b"null", b"*", b"", b"http://" + b"a" * 3000, b"\xff"]),
        b"Expect": st.sampled_from([b"100-continue", b"100-Continue", b"200-ok", b""]),
        b"Connection": st.sampled_from([b"close", b"keep-alive", b"Upgrade", b"close, keep-alive", b"", b"TE"]),
        b"Upgrade": st.sampled_from([b"websocket", b"h2c", b"\xff"]),
        b"Access-Control-Request-Method": st.sampled_from([b"POST", b"PUT", b"GET", b"DELETE", b"", b"\xff"]),
        b"Access-Control-Request-Headers": st.sampled_from([b"content-type", b"range", b"authorization", b"x-y",
                                                            b"a," * 1000]),
        b"Accept-Encoding": st.sampled_from([b"gzip", b"br", b"*", b"identity;q=0"]),
        b"Accept": st.sampled_from([b"*/*", b"application/json", b"text/html;q=0.1"]),
        b"Cookie": st.sampled_from([b"a=b", b"a" * 5000]),
        b"X-Forwarded-For": st.sampled_from([b"1.2.3.4", b"evil.example"]),
        b"X-Forwarded-Host": st.sampled_from([b"evil.example", b""]),
        b"TE": st.sampled_from([b"trailers", b"gzip"]),
        b"Keep-Alive": st.sampled_from([b"timeout=0", b"max=1"]),
        b"Content-Encoding": st.sampled_from([b"gzip", b"br", b"identity"]),
        b"User-Agent": st.one_of(st.just(b"fuzz/1"), big),
    }  # fmt: skip


def _header_lines(token: bytes, sha: bytes, *, wild: bool) -> st.SearchStrategy[tuple[bytes, ...]]:
    """Host (or none, or two), up to six more header lines, and now and then thousands."""
    values = _header_values(token, sha)
    known = st.one_of([st.tuples(_casings(name), value if wild else value.filter(_visible)).map(b": ".join)
                       for name, value in values.items()])  # fmt: skip
    value = st.binary(max_size=40).filter(_plain) if wild else st.from_regex(rb"\A[ -~]{0,40}\Z")
    invented = st.tuples(st.from_regex(rb"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}\Z"), value).filter(
        lambda t: t[0].lower() not in FRAMING_NAMES).map(b": ".join)  # fmt: skip
    strange = st.sampled_from([b" folded continuation", b"\tfolded", b"Bad Name: 1", b"NoColon", b": empty-name",
                               b"X-\xff: 1", b"X: a\rb", b"X:\x00", b"X : spaced-name", b"X-Empty:",
                               b"X-Obs: \x80\xff", b"X-Big: " + b"a" * 100_000])  # fmt: skip
    host = st.sampled_from([(b"Host: 127.0.0.1",)] * 6 + [(), (b"Host: a", b"Host: b"), (b"Host: evil.example",),
                            (b"Host: a b",), (b"Host: [::1]:99999",), (b"Host: " + b"h" * 10_000,), (b"Host:",),
                            (b"host: 127.0.0.1",)])  # fmt: skip
    many = st.one_of(st.just(()), st.just(()), st.just(()), st.just(()), st.just(()),
                     st.integers(1, 3000).map(lambda n: tuple(b"X-N%d: v" % i for i in range(n))))  # fmt: skip
    auth = st.sampled_from([(), (b"Authorization: Bearer " + token,)])  # writes get past the token check
    preflight = st.builds(
        lambda origin, method, asked: (b"Origin: " + origin, b"Access-Control-Request-Method: " + method, *asked),
        st.sampled_from([b"http://a.example", b"null"]), st.sampled_from([b"POST", b"GET", b"PUT", b"DELETE"]),
        st.sampled_from([(), (b"Access-Control-Request-Headers: content-type",),
                         (b"Access-Control-Request-Headers: authorization",),
                         (b"Access-Control-Request-Headers: x-y, range",)]),
    )  # fmt: skip
    cors = st.one_of(st.just(()), st.just(()), st.just(()), preflight)  # a browser's preflight, with OPTIONS
    extra = st.lists(st.one_of(known, known, invented, *([strange] if wild else [])), max_size=6).map(tuple)
    return st.tuples(host, auth, cors, extra, many).map(lambda t: sum(t, ()))  # fmt: skip


Change = Callable[[bytes], bytes]


def _splice(at: int, piece: bytes, lowest: int) -> Change:
    """Put ``piece`` into the path at ``at`` (wrapped round; from ``lowest`` on, 1 keeps the first /)."""

    def change(path: bytes) -> bytes:
        i = max(lowest, at % (len(path) + 1))
        return path[:i] + piece + path[i:]

    return change


def _escaped(lowest: int) -> Change:
    """Every byte of the path from ``lowest`` on percent-escaped."""
    return lambda path: path[:lowest] + b"".join(b"%%%02X" % c for c in path[lowest:])


def _target_changes(*, wild: bool) -> st.SearchStrategy[Change]:
    """What is done to a route's path to make the request target (most often nothing)."""
    escapes = ESCAPES + WILD_ESCAPES if wild else ESCAPES
    fills = [b"a", b"/", b"%41", b"?a=1&", b"%"] if wild else [b"a", b"/", b"%41", b"?a=1&"]
    query = st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass"))
    query = query.filter(_plain) if wild else query.map(lambda q: quote(q, safe=b"=&").encode())
    unchanged: Change = lambda path: path  # noqa: E731
    return st.one_of(
        st.just(unchanged), st.just(unchanged), st.just(unchanged),
        st.sampled_from(QUERIES).map(lambda q: lambda path: path + q),
        st.builds(_splice, st.integers(0, 200), st.sampled_from(escapes), st.just(0 if wild else 1)),
        st.just(_escaped(0 if wild else 1)),
        st.tuples(st.sampled_from(fills), st.integers(1_000, 120_000 if wild else 60_000)).map(
            lambda t: lambda path: path + t[0] * max(1, t[1] // len(t[0]))),
        st.sampled_from([b"http://evil.example", b"http://127.0.0.1", b"https://x:99999", b"http://[::1]", b"ftp://x",
                         b"//evil.example"]).map(lambda prefix: lambda path: prefix + path),
        query.map(lambda q: lambda path: path + b"?q=" + q),
        *([st.sampled_from([b"*", b"127.0.0.1:80", b"", b"?", b"#", b"/\x7f"]).map(lambda t: lambda path: t)]
          if wild else []),
    )  # fmt: skip


# --- bodies -------------------------------------------------------------------------------------------


def _numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.integers(1, 5000).map(lambda n: "1" + "0" * n),
        st.integers(1, 5000).map(lambda n: "-" + "9" * n),
        st.sampled_from(["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "0e0", "-0", "1E+2", "01", "1.",
                         ".5", "+1", "0x10", "1_000", "1e999999999"]),
    )  # fmt: skip


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False)),
        st.sampled_from(['"\\ud800"', '"\\u0000"', '"\\x"', '"', '"a' + "\\" * 3 + '"', '"' + "a" * 300 + '"']),
        st.sampled_from([*PLATFORMS, *RUNTIMES, *EVENTS, "mlp", "1", "2"]).map(json.dumps),
    )


def _obj(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


def _json_values() -> st.SearchStrategy[str]:
    scalars = st.one_of(_numbers(), _strings(), st.sampled_from(["true", "false", "null"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(_strings(), inner), max_size=4).map(_obj)), max_leaves=12)  # fmt: skip


def _documents() -> st.SearchStrategy[str]:
    """JSON texts (and near-JSON) of the shapes the routes read: profiles, telemetry, rollouts."""
    value = _json_values()
    key = st.sampled_from(["platform", "device_id", "arch", "os_version", "app_version", "network", "runtimes",
                           "accelerators", "memory_mb", "storage_free_mb", "max_download_mb", "latency_budget_ms",
                           "version", "percent", "events", "x"]).map(json.dumps)  # fmt: skip
    platform = st.sampled_from(PLATFORMS).map(lambda p: f'"platform":"{p}"')
    runtimes = st.lists(st.tuples(st.sampled_from(RUNTIMES).map(json.dumps), st.one_of(_strings(), value)),
                        max_size=3).map(lambda kv: '"runtimes":' + _obj(kv))  # fmt: skip
    accelerators = st.lists(st.sampled_from(ACCELERATORS).map(json.dumps), max_size=8).map(
        lambda xs: '"accelerators":[' + ",".join(xs) + "]")  # fmt: skip
    fields = st.lists(st.tuples(key, st.one_of(_numbers(), value)), max_size=6)
    profile = st.tuples(platform, fields, runtimes, accelerators).map(
        lambda t: "{" + ",".join([t[0], *(f"{k}:{v}" for k, v in t[1]), t[2], t[3]]) + "}")  # fmt: skip
    names = st.sampled_from(["event", "model", "version", "variant", "device_id", "at", "detail", "ms", "bytes"])
    event = st.lists(st.tuples(names.map(json.dumps), st.one_of(_strings(), _numbers())), max_size=9).map(_obj)
    telemetry = st.tuples(event, st.integers(0, 130)).map(lambda t: '{"events":[' + ",".join([t[0]] * t[1]) + "]}")
    rollout = st.tuples(st.sampled_from(['"1"', '"2"', '"3"', '"../x"', '""', "1"]), _numbers()).map(
        lambda t: f'{{"version":{t[0]},"percent":{t[1]}}}')  # fmt: skip
    deep = st.tuples(st.integers(1, 100_000), st.sampled_from(["[", '{"a":'])).map(
        lambda t: t[1] * t[0] + ("1" if t[1] != "[" else "") + ("]" if t[1] == "[" else "}") * t[0])  # fmt: skip
    return st.one_of(profile, profile, telemetry, rollout, value, deep,
                     st.integers(1, 100_000).map(lambda n: '{"platform":"linux","x":' + "[" * n + "]" * n + "}"),
                     st.integers(1, 50_000).map(lambda n: "[" * n))  # fmt: skip


def _encoded(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    bad = st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xfe\xff", b"\x00", b"\xf4\x90\x80\x80"])

    def broken(t: tuple[bytes, int, bytes]) -> bytes:
        data, i, piece = t
        i %= len(data) + 1
        return data[:i] + piece + data[i:]

    utf8 = text.map(lambda s: s.encode("utf-8", "surrogatepass"))
    return st.one_of(
        utf8, utf8, utf8, st.tuples(utf8, st.integers(0, 10_000), bad).map(broken),
        utf8.map(lambda b: b"\xef\xbb\xbf" + b), text.map(lambda s: s.encode("utf-16", "surrogatepass")),
    )  # fmt: skip


def _payloads() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        _encoded(_documents()), _encoded(_documents()), _encoded(_documents()),
        st.binary(max_size=512),
        st.tuples(st.integers(60_000, 300_000), st.sampled_from([b"x", b"{", b"\x00"])).map(lambda t: t[1] * t[0]),
        st.integers(60_000, 300_000).map(lambda n: b'{"platform":"linux","pad":"' + b"a" * n + b'"}'),
        st.sampled_from([b"a=1&b=2", b"--x\r\n\r\n--x--", b"\x1f\x8b\x08\x00"]),
    )  # fmt: skip


# --- framing ------------------------------------------------------------------------------------------


def _chunked(body: bytes, cuts: list[int], form: bytes, ext: bytes, trailer: bytes) -> bytes:
    edges = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    out = b"".join(form % (b - a) + ext + b"\r\n" + body[a:b] + b"\r\n" for a, b in pairwise(edges) if b > a)
    return out + b"0" + ext + b"\r\n" + trailer + b"\r\n"


def _chunkings(body: bytes) -> st.SearchStrategy[bytes]:
    return st.builds(_chunked, st.just(body), st.lists(st.integers(0, 400_000), max_size=6),
                     st.sampled_from([b"%x", b"%X", b"%08x"]),
                     st.sampled_from([b"", b"", b";a=b", b';x="y"', b";" + b"e" * 1000]),
                     st.sampled_from([b"", b"", b"X-Trailer: 1\r\n"]))  # fmt: skip


def _framings(body: bytes, *, conflicts: bool) -> st.SearchStrategy[tuple[str, tuple[bytes, ...], bytes]]:
    """(label, framing header lines, the body as sent); every reading of them ends within the body sent."""
    n = len(body)
    chunked_names = st.sampled_from([(b"Transfer-Encoding: chunked",)] * 3 + [
        (b"transfer-encoding: CHUNKED",), (b"Transfer-Encoding: gzip, chunked",),
        (b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked")])  # fmt: skip
    lengths = st.integers(0, n).map(lambda k: b"%d" % k)
    odd_lengths = st.sampled_from([b"+%d" % n, b"-1", b"0x%x" % n, b" %d " % n, b"%d, %d" % (n, n), b"",
                                   b"%de0" % n, b"00%d" % n, b"\xd9\xa3", b"%d.0" % n, b"9" * 30])  # fmt: skip
    other_te = st.sampled_from([b"gzip", b"identity", b"chunked, gzip", b"xchunked", b"chunked;q=1", b"\x00chunked",
                                b"chunked\x0b", b"", b"chunked, identity"])  # fmt: skip
    conflict = st.one_of(
        _chunkings(body).flatmap(lambda sent: st.integers(0, len(sent)).map(
            lambda k: ("conflict", (b"Content-Length: %d" % k, b"Transfer-Encoding: chunked"), sent))),
        st.tuples(lengths, lengths).map(lambda t: ("conflict", (b"Content-Length: " + t[0], b"Content-Length: " + t[1]),
                                                   body)),
        odd_lengths.map(lambda v: ("conflict", (b"Content-Length: " + v,), body)),
        st.tuples(other_te, st.one_of(st.just(None), lengths)).map(
            lambda t: ("conflict", (b"Transfer-Encoding: " + t[0],) + ((b"Content-Length: " + t[1],) if t[1] else ()),
                       body)),
        st.just(("conflict", (b"Transfer-Encoding:", b" chunked"), body)),
    )  # fmt: skip
    return st.one_of(
        st.just(("length", (b"Content-Length: %d" % n,), body)),
        st.just(("length", (b"Content-Length: %d" % n,), body)),
        st.tuples(chunked_names, _chunkings(body)).map(lambda t: ("chunked", t[0], t[1])),
        *([st.just(("none", (), body))] if conflicts or not body else []),  # a body without a length: garbage
        *([conflict, conflict] if conflicts else []),
    )  # fmt: skip


def _request(endpoint: tuple[bytes, bytes], method: bytes | None, change: Change, version: bytes,
             lines: tuple[bytes, ...], framed: tuple[str, tuple[bytes, ...], bytes], eol: bytes,
             ) -> Request:  # fmt: skip
    label, framing, body = framed
    return Request(endpoint[0] if method is None else method, change(endpoint[1]), version, lines + framing, body,
                   label, eol)  # fmt: skip


@cache
def _requests(sha: bytes, token: bytes) -> st.SearchStrategy[Request]:
    """Whole requests, every part drawn. Most are well-formed in all but what their fields hold, so
    that they reach the routes; the rest have any part malformed (method, target, version, header
    lines, line ends, framing)."""
    endpoints = st.sampled_from([(m.encode(), r.encode().replace(b"{sha}", sha)) for m, r in ENDPOINTS])
    well_formed = st.builds(
        _request, endpoints, st.none(), _target_changes(wild=False), st.sampled_from(VERSIONS),
        _header_lines(token, sha, wild=False), _payloads().flatmap(lambda body: _framings(body, conflicts=False)),
        st.just(b"\r\n"),
    )  # fmt: skip
    methods = st.one_of(st.sampled_from(WILD_METHODS), st.from_regex(rb"\A[A-Z]{1,12}\Z"),
                        st.binary(min_size=1, max_size=8).filter(_plain))  # fmt: skip
    malformed = st.builds(
        _request, endpoints, st.one_of(st.none(), methods), _target_changes(wild=True),
        st.sampled_from(VERSIONS + WILD_VERSIONS), _header_lines(token, sha, wild=True),
        _payloads().flatmap(lambda body: _framings(body, conflicts=True)), st.sampled_from([b"\r\n"] * 4 + [b"\n"]),
    )  # fmt: skip
    return st.one_of(well_formed, well_formed, well_formed, malformed)  # fmt: skip


def _framed(request: Request) -> Case:
    return Case("framed", request.framing, request.head + request.body, (request.method,), upgrade=request.upgrade)


def _pipelined(requests: list[Request]) -> Case:
    cut = next((i + 1 for i, r in enumerate(requests) if r.upgrade), len(requests))  # after an upgrade: ignored
    kept = requests[:cut]
    return Case("pipelined", "+".join(r.framing for r in kept), b"".join(r.head + r.body for r in kept),
                tuple(r.method for r in kept), upgrade=kept[-1].upgrade)  # fmt: skip


def _incomplete(request: Request, cut: int, more: int) -> Case:
    whole = request.head + request.body
    if more and request.framing == "length":  # a declared length past the body sent
        declared = replace(request, lines=(*request.lines[:-1], b"Content-Length: %d" % (len(request.body) + more)))
        return Case("incomplete", "declared", declared.head + request.body, (request.method,))
    return Case("incomplete", "cut", whole[: 1 + cut % max(1, len(whole) - 1)], (request.method,))


def _expect(request: Request, value: bytes) -> Case:
    body = request.body or b"{}"
    lines = tuple(line for line in request.lines if not line.lower().startswith(FRAMING_NAMES))
    head = replace(request, lines=(*lines, b"Expect: " + value, b"Content-Length: %d" % len(body))).head
    return Case("expect", "length", head, (request.method,), later=body, upgrade=request.upgrade)


@cache
def cases(sha: bytes, token: bytes) -> st.SearchStrategy[Case]:
    requests = _requests(sha, token)
    return st.one_of(
        requests.map(_framed), requests.map(_framed), requests.map(_framed), requests.map(_framed),
        st.lists(requests, min_size=2, max_size=3).map(_pipelined),
        st.builds(_incomplete, requests, st.integers(0, 1 << 20),
                  st.one_of(st.just(0), st.integers(1, 1000), st.integers(1, 10**19))),
        st.builds(_expect, requests, st.sampled_from([b"100-continue", b"100-Continue"])),
    )  # fmt: skip


# --- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    address: tuple[str, int]
    sha: bytes  # an artifact's
    token: bytes  # the admin token (scope "*")


@pytest.fixture(scope="module")
def live(served: Served) -> Live:
    host, port = served.url.removeprefix("http://").split(":")
    found = re.search(r"/v1/artifacts/([0-9a-f]{64})", served.client.get("/v1/models/mlp/manifest").text)
    assert found
    return Live((host, int(port)), found.group(1).encode(), served.tokens["admin"].encode())


@dataclass
class Census:
    """What the fuzz test sent and saw."""

    logs: Tracebacks
    shapes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    not_json: dict[tuple[int, bytes], Case] = field(default_factory=dict)  # (status, content type) -> a case


@pytest.fixture
def census(served: Served) -> Iterator[Census]:
    """One census for all the fuzz test's examples (hypothesis's function-scoped-fixture health
    check is off for it), checked when the test ends."""
    before = counted(served.client)
    with tracebacks() as logs:
        seen = Census(logs)
        yield seen
        after = settled(served.client, before, quiet=0.5)  # the last cases' handlers have ended
    total = sum(seen.shapes.values())
    if seen.not_json:
        warnings.warn("4xx answers that are not JSON: " + "; ".join(
            f"{status} {kind.decode('latin-1')!r} to {case!r}"[:600] for (status, kind), case in seen.not_json.items()),
            stacklevel=1)  # fmt: skip
    assert total >= CASES, f"only {total} cases ran ({dict(seen.shapes)}); the run needs {CASES}"
    assert {s.split(":")[0] for s in seen.shapes} == set(SHAPES), seen.shapes
    assert {f for s in seen.shapes if s.startswith("framed:") for f in s.split(":")[1:]} == set(FRAMINGS), seen.shapes
    assert not seen.logs.found, f"the server logged {len(seen.logs.found)} tracebacks: " + "\n".join(
        f"{message} (logged while or after {case!r}"[:800] + ")" for case, message in seen.logs.found[:10])  # fmt: skip
    assert not (errors := server_errors(before, after)), f"/metrics counted 5xx answers: {errors}"


def _error_shape(body: bytes) -> bool:
    """Whether ``body`` is ``{"error": {"code": str, "message": str}}``."""
    try:
        error = json.loads(body)["error"]
        return isinstance(error["code"], str) and isinstance(error["message"], str)
    except (ValueError, TypeError, KeyError):
        return False


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_raw_http_fuzz_answers_every_request_below_500(live: Live, census: Census, data: st.DataObject) -> None:
    case = data.draw(cases(live.sha, live.token), label="case")
    census.shapes[f"{case.shape}:{case.framing}"] += 1
    census.logs.current = case
    try:
        answers = exchange(live.address, case)
    except TimeoutError:
        pytest.fail(f"no answer within {TIMEOUT} s to {case!r}")
    if case.shape != "incomplete":
        assert answers, f"the connection closed without an answer to {case!r}"
    for answer in answers:
        census.statuses[answer.status] += 1
        assert answer.status < 500, f"{answer.status} {answer.body[:500]!r} to {case!r}"
        kind = answer.headers.get(b"content-type", b"")
        if 400 <= answer.status < 500 and answer.body:
            if kind.startswith(b"application/json"):
                assert _error_shape(answer.body), f"{answer.status} {answer.body[:500]!r} to {case!r}"
            else:
                census.not_json.setdefault((answer.status, kind), case)
    assert healthz(live.address) == 200, f"GET /healthz is not 200 after {case!r}"


# --- what the fuzzer found, one test each ----------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "body"),
    [(b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", b'{"events":['),
     (b"PUT /v1/models/mlp/channels/stable HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
      b"Content-Length: 100\r\n\r\n", b'{"version":'),
     (b"POST /v1/models/mlp/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
      b"Content-Length: 100000\r\n\r\n", b"\x1f\x8b")],
    ids=["telemetry", "rollout", "publish"],
)  # fmt: skip
def test_raw_http_a_client_gone_mid_body_is_not_a_server_error(live: Live, served: Served, head: bytes,
                                                               body: bytes) -> None:  # fmt: skip
    """A client that hangs up inside its body leaves nobody to answer: no traceback in the log and
    no 500 counted in /metrics (Starlette's ClientDisconnect out of ``read_body`` was both)."""
    before = counted(served.client)
    with tracebacks() as logs:
        with socket.create_connection(live.address, timeout=TIMEOUT) as sock:
            sock.sendall(head.replace(b"{token}", live.token) + body)
            sock.shutdown(socket.SHUT_WR)
            assert Stream(sock, time.monotonic() + TIMEOUT).answer() is None  # closed, nothing said
        after = settled(served.client, before)  # its handler has ended (or TIMEOUT has passed)
    assert not logs.found, logs.found
    assert not (errors := server_errors(before, after)), errors


def test_raw_http_a_refused_cors_preflight_gets_the_json_error_shape(served: Served) -> None:
    """Starlette's CORSMiddleware refuses a preflight for a method (or header) it does not grant
    with a text/plain 400, "Disallowed CORS method"; every other refusal has the JSON error shape."""
    answer = served.client.options("/v1/models/mlp/resolve", headers={
        "Origin": "http://a.example", "Access-Control-Request-Method": "PUT"})  # fmt: skip
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    assert answer.json()["error"]["code"], answer.text


def _answers(live: Live, data: bytes) -> list[int]:
    """The statuses answered to ``data`` on a fresh connection, until the server closes it."""
    with socket.create_connection(live.address, timeout=TIMEOUT) as sock:
        sock.sendall(data)
        stream = Stream(sock, time.monotonic() + TIMEOUT)
        return [answer.status for answer in iter(stream.answer, None)]


def test_raw_http_pipelined_answers_come_in_the_order_of_their_requests(live: Live) -> None:
    """RFC 9112 9.3.2: a server MUST answer pipelined requests in order. A malformed request after a
    good one was answered (400, close) at once, before the good one's answer, which was lost."""
    assert _answers(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n") == [200, 400]


def test_raw_http_a_pipeline_cut_short_is_not_a_server_error(live: Live, served: Served) -> None:
    """When the server closes a connection with pipelined requests in flight (here after a
    malformed one), their handlers write to a closed transport: uvicorn marks only the latest
    request disconnected, and uvloop raises RuntimeError ("the handler is closed") into the others."""
    before = counted(served.client)
    with tracebacks() as logs:
        _answers(live, b"GET /demo/mlp HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GARBAGE\r\n\r\n")
        settled(served.client, before)  # the first request's handler has ended
    assert not logs.found, logs.found
