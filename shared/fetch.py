"""Fetch the bytes of input audio given as base64, an http(s) URL or an s3:// URI, under a size cap.

URLs are checked against server-side request forgery: every address the host resolves to must be a
public one (unless INPUT_AUDIO_ALLOW_PRIVATE_URLS is set), and the connection goes to the address
that was checked, so a DNS answer that changes between check and connect cannot redirect it.
Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3

from shared.errors import InputError, ModelFilesError
from shared.schemas import decode_base64_audio
from shared.settings import Settings
from shared.storage import check_s3_bucket, check_s3_key, open_s3_object

_MAX_REDIRECTS = 3
_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dns-lookup")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Ranges Python's is_global counts as public that never lead to a public host: a translator into the
# operator's own IPv4 space (local-use NAT64, RFC 8215; SIIT's IPv4-translated form, RFC 2765), the IETF
# protocol assignments (192.0.0.0/24, anycast relays among them), and deprecated site-local IPv6.
_NEVER_PUBLIC = tuple(
    ipaddress.ip_network(network) for network in ("64:ff9b:1::/48", "::ffff:0:0:0/96", "192.0.0.0/24", "fec0::/10")
)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped, compatible (::a.b.c.d), NAT64, 6to4 or Teredo."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    packed = address.packed
    if address in _NAT64 or (packed[:12] == bytes(12) and packed[12:] != bytes(4) and int(address) > 1):
        return ipaddress.IPv4Address(packed[12:])  # NAT64 well-known prefix, or deprecated ::a.b.c.d
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Only global unicast addresses; an IPv6 address that embeds an IPv4 one is judged by that one too."""
    if not address.is_global or address.is_multicast or any(address in network for network in _NEVER_PUBLIC):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None and not is_public(inner):
            return False
    return True


def _deadline_passed(field: str, limit: float, what: str) -> InputError:
    return InputError(f"{field}: {what} took over {limit:g} s (INPUT_AUDIO_FETCH_TIMEOUT_SECONDS)")


def _public_address(host: str, port: int, field: str, allow_private: bool, deadline: float, limit: float) -> str:
    # getaddrinfo cannot be interrupted: it runs in a thread, and the fetch stops waiting at the deadline.
    lookup = _LOOKUPS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        answers = lookup.result(timeout=max(deadline - time.monotonic(), 0))
    except FuturesTimeout:
        lookup.cancel()
        raise _deadline_passed(field, limit, f"looking up {host!r}") from None
    except socket.gaierror:
        raise InputError(f"{field}: host {host!r} does not resolve") from None
    addresses = [ipaddress.ip_address(answer[4][0].split("%")[0]) for answer in answers]
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise InputError(
                    f"{field}: URL host {host!r} resolves to non-public address {address}; "
                    "private, loopback and link-local addresses are refused"
                )
    return str(addresses[0])


def _read_capped(response: urllib3.BaseHTTPResponse, field: str, max_bytes: int, deadline: float, limit: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InputError(f"{field}: remote file is {declared} bytes, over the {max_bytes}-byte cap")
    chunks, total = [], 0
    while chunk := response.read1(64 * 1024):  # whatever has arrived: the deadline is checked as bytes trickle
        total += len(chunk)
        if total > max_bytes:
            raise InputError(f"{field}: remote file exceeds the {max_bytes}-byte cap")
        if time.monotonic() > deadline:
            raise _deadline_passed(field, limit, "the download")
        chunks.append(chunk)
    return b"".join(chunks)


def _fetch_url(url: str, field: str, settings: Settings, max_bytes: int) -> bytes:
    """GET with every hop checked, under one deadline for the whole fetch, lookups included (a stalled resolver
    or a server trickling bytes would otherwise hold the job); any transport failure is an error naming the field."""
    limit = settings.input_fetch_timeout_s
    deadline = time.monotonic() + limit
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{field}: only http(s) URLs are fetched, got {parts.scheme!r}")
        if parts.username is not None or parts.password is not None:
            raise InputError(f"{field}: URLs with a user name or password (user:pass@host) are refused")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = _public_address(parts.hostname, port, field, settings.allow_private_urls, deadline, limit)
        pool_class = urllib3.HTTPSConnectionPool if parts.scheme == "https" else urllib3.HTTPConnectionPool
        tls = {"server_hostname": parts.hostname, "assert_hostname": parts.hostname} if parts.scheme == "https" else {}
        remaining = max(deadline - time.monotonic(), 0.1)
        timeout = urllib3.Timeout(connect=min(10.0, remaining), read=remaining)
        pool = pool_class(address, port, timeout=timeout, retries=False, **tls)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            response = pool.urlopen(
                "GET", target, headers={"Host": parts.netloc}, redirect=False, preload_content=False
            )
        except urllib3.exceptions.HTTPError as exc:
            reason = type(exc).__name__
            raise InputError(f"{field}: could not fetch {parts.scheme}://{parts.netloc}: {reason}") from None
        try:
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise InputError(f"{field}: fetching the URL answered HTTP {response.status}")
            return _read_capped(response, field, max_bytes, deadline, limit)
        except urllib3.exceptions.HTTPError as exc:  # a read that timed out, a connection cut mid-body
            raise InputError(f"{field}: the download from {parts.netloc} failed ({type(exc).__name__})") from None
        finally:
            response.release_conn()
            pool.close()
    raise InputError(f"{field}: more than {_MAX_REDIRECTS} redirects")


def fetch_artifact(uri: str, label: str, settings: Settings, max_bytes: int) -> bytes:
    """An operator-configured file (e.g. a LoRA): file://, https:// or s3://, under a size cap."""
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.is_file():
            raise InputError(f"{label}: {path} is not a file")
        if path.stat().st_size > max_bytes:
            raise InputError(f"{label}: {path} is {path.stat().st_size} bytes, over the {max_bytes}-byte cap")
        return path.read_bytes()
    if uri.startswith(("https://", "http://")):
        return _fetch_url(uri, label, settings, max_bytes)
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        return open_s3_object(settings.s3, bucket, key, label, max_bytes)
    raise InputError(f"{label}: must be a file://, https:// or s3:// URI")


def artifact_name(uri: str, given: str | None) -> str:
    """An operator artifact's name (its cache folder, and how results name it): the one given, else a digest."""
    return given or hashlib.sha256(uri.encode()).hexdigest()[:16]


def fetch_verified(
    uri: str, variable: str, sha256: str | None, cache_file: Path, settings: Settings, max_bytes: int
) -> Path:
    """An operator's artifact (a LoRA) fetched once into `cache_file` and, when `sha256` is given, checked
    against it (the ..._SHA256 variable beside `variable`). Any problem is a ModelFilesError naming the
    variable: it becomes the answer of every job, and nothing unverified is used."""
    if cache_file.is_file() and (sha256 is None or hashlib.sha256(cache_file.read_bytes()).hexdigest() == sha256):
        return cache_file
    try:
        data = fetch_artifact(uri, variable, settings, max_bytes)
    except InputError as exc:
        raise ModelFilesError(str(exc)) from None
    found = hashlib.sha256(data).hexdigest()
    if sha256 is not None and found != sha256:
        raise ModelFilesError(
            f"{variable.removesuffix('_URI')}_SHA256: the file at {uri} has sha256 {found}, expected {sha256}; not used"
        )
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_bytes(data)
    return cache_file


def fetch_audio_bytes(source: str, field: str, settings: Settings) -> bytes:
    if source.startswith(("https://", "http://")):
        return _fetch_url(source, field, settings, settings.input_audio_max_bytes)
    if source.startswith("s3://"):
        bucket, _, key = source[5:].partition("/")
        check_s3_bucket(settings.s3, bucket, field)
        check_s3_key(settings.s3, key, field)
        return open_s3_object(settings.s3, bucket, key, field, settings.input_audio_max_bytes)
    data = decode_base64_audio(source)
    if len(data) > settings.input_audio_max_bytes:
        raise InputError(f"{field}: audio is {len(data)} bytes, over the {settings.input_audio_max_bytes}-byte cap")
    return data
