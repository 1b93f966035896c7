"""Origins as the relay compares them: the normal form of an origin, and whether two are one
site for the browser (the session cookie is SameSite=Strict, so a separate app origin must
be on the relay's site)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, or ValueError with a fix hint."""
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = "must be http(s)://host[:port]"
        raise ValueError(msg)
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        msg = "must be an origin only: no path, query, fragment or credentials"
        raise ValueError(msg)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def same_site(a: str, b: str) -> bool:
    """Whether two origins are on one site as browsers count it for SameSite cookies: the
    same scheme, and the same host (ports aside) or host names sharing a parent domain of
    at least two labels (without the public suffix list a shared ``co.uk`` passes; the app
    then cannot keep a session)."""
    pa, pb = urlsplit(a), urlsplit(b)
    ha, hb = pa.hostname or "", pb.hostname or ""
    if pa.scheme != pb.scheme:
        return False
    if ha == hb:
        return True
    if _is_ip(ha) or _is_ip(hb):
        return False
    la, lb = ha.split("."), hb.split(".")
    shared = 0
    while shared < min(len(la), len(lb)) and la[-1 - shared] == lb[-1 - shared]:
        shared += 1
    return shared >= 2


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
