"""QR codes for what a person hands from one device to another (pair commands, invite links)."""

from __future__ import annotations

import io

import segno


def qr_svg(text: str) -> str:
    """``text`` as a standalone QR code SVG (dark on white, so it scans in dark mode too).

    Drawn on the relay so the phone needs no third-party script (R19); it shows it as a
    ``data:`` image.
    """
    buffer = io.BytesIO()
    segno.make(text, error="m").save(
        buffer, kind="svg", border=4, dark="#000", light="#fff", xmldecl=False, omitsize=True
    )
    return buffer.getvalue().decode("ascii")
