"""Local pictures: a photo beside the issue, prepared for email, published with the archive.

The pictures are made here: a 4000x3000 camera JPEG with GPS EXIF and a "rotate me"
orientation tag, a PNG with transparency, a header that claims 2.5 gigapixels (a
decompression bomb), a text file named .jpg, a narrow picture, a heavy animated GIF.  The
assertions are on the files `build` and `archive` write, on the HTML, and on `check`.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import Cli
from newsletter.errors import NewsletterError

ISSUE = Path("issues") / "2019-09.yaml"
FIRST_SRC = "src: https://www.example.org/images/2019-09/labour-migration.jpg"
SECOND_SRC = "src: https://www.example.org/images/2019-09/fair-hiring-workshop.jpg"
BASE = "https://news.example.org/archive/2019-09/images/"


def camera_photo() -> bytes:
    """4000x3000, left half red and right half blue, stored sideways (orientation 6: the
    viewer turns it 90 degrees clockwise), with the camera's make and a GPS position."""
    im = Image.new("RGB", (4000, 3000), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 2000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "CanonSecretCam"
    exif[0x8825] = {1: "N", 2: (9.0, 56.0, 7.5), 3: "W", 4: (84.0, 5.0, 3.25)}
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=90)
    return buf.getvalue()


def transparent_png(width: int = 1600, height: int = 400) -> bytes:
    im = Image.new("RGBA", (width, height), (11, 83, 148, 255))
    im.paste((0, 0, 0, 0), (0, 0, width // 4, height))  # a transparent left quarter
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def bomb_header(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (2.5 gigapixels by default)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def heavy_gif() -> bytes:
    frames = [
        Image.frombytes("L", (700, 500), os.urandom(700 * 500)).convert("P") for _ in range(4)
    ]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert len(buf.getvalue()) > 1_000_000
    return buf.getvalue()


def _use(workspace: Path, replacements: dict[str, str]) -> None:
    path = workspace / ISSUE
    text = path.read_text("utf-8")
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text, "utf-8")


def _put(workspace: Path, name: str, data: bytes) -> Path:
    target = workspace / "issues" / "2019-09" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _line_of(workspace: Path, needle: str) -> int:
    lines = (workspace / ISSUE).read_text("utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_build_prepares_a_camera_photo_and_the_email_points_at_its_published_copy(
    cli: Cli, workspace: Path
) -> None:
    photo = camera_photo()
    assert b"CanonSecretCam" in photo
    _put(workspace, "market.jpg", photo)
    _put(workspace, "logo.png", transparent_png())
    _use(workspace, {FIRST_SRC: "src: 2019-09/market.jpg", SECOND_SRC: "src: 2019-09/logo.png"})

    r = cli("build", "2019-09")
    assert r.code == 0, r.err
    folder = workspace / "build" / "2019-09" / "images"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2
    jpg = next(n for n in names if n.endswith(".jpg"))
    png = next(n for n in names if n.endswith(".png"))
    assert re.fullmatch(r"market-[0-9a-f]{8}\.jpg", jpg) and re.fullmatch(
        r"logo-[0-9a-f]{8}\.png", png
    )

    data = (folder / jpg).read_bytes()
    assert b"CanonSecretCam" not in data and b"Exif" not in data and len(data) < 300_000
    with Image.open(folder / jpg) as im:
        assert im.format == "JPEG" and im.info.get("progressive") == 1
        assert im.size == (1104, 1472)  # turned upright (3000x4000), then 1,104 wide
        assert dict(im.getexif()) == {} and "icc_profile" not in im.info
        rgb = im.convert("RGB")
        # The red left half is at the top once turned clockwise; blue at the bottom.
        top, bottom = rgb.getpixel((552, 100)), rgb.getpixel((552, 1372))
        assert isinstance(top, tuple) and isinstance(bottom, tuple)
        assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    with Image.open(folder / png) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (1104, 276)
        assert im.getpixel((10, 10))[3] == 0 and im.getpixel((1000, 10))[3] == 255  # type: ignore[index]
        assert not (set(im.info) - {"dpi", "gamma"}), im.info

    html = (workspace / "build" / "2019-09" / "email.html").read_text("utf-8")
    img = re.search(rf'<img [^>]*src="{re.escape(BASE + jpg)}"[^>]*>', html)
    assert img, html[:2000]
    assert 'width="552"' in img.group(0)
    assert 'alt="Representatives of IOM and FECAGRO around a meeting table"' in img.group(0)
    assert BASE + png in html
    assert "2019-09/market.jpg" not in html  # never the path on someone's computer
    web = (workspace / "build" / "2019-09" / "web.html").read_text("utf-8")
    assert BASE + jpg in web

    # The archive publishes them at that address: <base_url><issue>/images/<name>.
    assert cli("archive").code == 0
    published = workspace / "archive-site" / "2019-09" / "images" / jpg
    assert published.read_bytes() == data


def test_same_photo_gives_the_same_bytes_and_name_every_time(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    _put(workspace, "market.jpg", camera_photo())
    _use(workspace, {FIRST_SRC: "src: 2019-09/market.jpg"})
    assert cli("build", "2019-09").code == 0
    folder = workspace / "build" / "2019-09" / "images"
    [first] = list(folder.iterdir())
    before = first.read_bytes()
    # A damaged cache, another output folder: prepared again from the photo.
    cache = workspace / ".newsletter" / "pictures"
    [cached] = list(cache.iterdir())
    cached.write_bytes(b"damaged")
    stale = cache / "0123456789abcdef0123456789abcdef.jpg"  # unused for 90 days
    stale.write_bytes(b"old")
    os.utime(stale, (time.time() - 90 * 86400,) * 2)
    assert cli("build", "2019-09", "-o", str(tmp_path / "again")).code == 0
    assert not stale.exists() and cached.read_bytes() == before
    [second] = list((tmp_path / "again" / "2019-09" / "images").iterdir())
    assert second.name == first.name and second.read_bytes() == before

    # A changed photo gets a new name; the old file leaves build/<issue>/images/.
    im = Image.new("RGB", (1200, 800), (10, 200, 10))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    _put(workspace, "market.jpg", buf.getvalue())
    assert cli("build", "2019-09").code == 0
    [third] = list(folder.iterdir())
    assert third.name != first.name and third.name.startswith("market-")


def test_a_narrow_picture_keeps_its_own_width_and_is_warned_about(
    cli: Cli, workspace: Path
) -> None:
    _put(workspace, "small.png", transparent_png(400, 100))
    _use(workspace, {FIRST_SRC: "src: 2019-09/small.png"})
    r = cli("build", "2019-09")
    assert r.code == 0, r.err
    line = _line_of(workspace, "src: 2019-09/small.png")
    assert (
        f"warning: issues/2019-09.yaml:{line}:7: articles[1].image.src: 2019-09/small.png is 400 px wide"
        in r.err
    )
    html = (workspace / "build" / "2019-09" / "email.html").read_text("utf-8")
    img = re.search(r'<img [^>]*src="[^"]*/images/small-[0-9a-f]{8}\.png"[^>]*>', html)
    assert img and 'width="400"' in img.group(0)


def test_check_reports_each_bad_picture_at_the_line_of_its_src(cli: Cli, workspace: Path) -> None:
    _put(workspace, "notes.jpg", b"These are my notes, not a photo.\n" * 20)
    _put(workspace, "bomb.png", bomb_header())
    _put(workspace, "big.png", bomb_header(8000, 6000))  # 48 megapixels: under Pillow's own limit
    _put(workspace, "dance.gif", heavy_gif())
    srcs = [
        "https://www.example.org/images/2019-09/labour-migration.jpg",
        "https://www.example.org/images/2019-09/fair-hiring-workshop.jpg",
        "https://www.example.org/images/2019-09/information-hub-upala.jpg",
    ]
    text = (workspace / ISSUE).read_text("utf-8")
    for old, new in zip(
        srcs, ["2019-09/notes.jpg", "2019-09/bomb.png", "2019-09/dance.gif"], strict=True
    ):
        text = text.replace(f"src: {old}", f"src: {new}")
    # Two more articles' pictures: a missing file and the 48-megapixel one.
    text = text.replace(
        "    url: https://www.example.org/news/2019-09/cross-border-network",
        "    url: https://www.example.org/news/2019-09/cross-border-network\n"
        "    image: {src: 2019-09/nowhere.jpg, alt: 'A missing picture'}",
    )
    text = text.replace(
        "    url: https://www.example.org/news/2019-09/migrants-in-crisis-protocols",
        "    url: https://www.example.org/news/2019-09/migrants-in-crisis-protocols\n"
        "    image: {src: 2019-09/big.png, alt: 'A huge picture'}",
    )
    (workspace / ISSUE).write_text(text, "utf-8")

    r = cli("check", "2019-09", "--format", "json")
    assert r.code == 1
    report = json.loads(r.out)
    found = {p["field"]: p for p in report["problems"] if "image" in (p["field"] or "")}
    expect = {
        "articles[1].image.src": ("error", "not_a_picture", "2019-09/notes.jpg"),
        "articles[2].image.src": ("error", "picture_missing", "2019-09/nowhere.jpg"),
        "articles[3].image.src": ("error", "picture_too_many_pixels", "2019-09/big.png"),
        "articles[4].image.src": ("error", "picture_too_many_pixels", "2019-09/bomb.png"),
        "articles[7].image.src": ("warning", "picture_heavy_gif", "2019-09/dance.gif"),
    }
    got = {
        f: (p["severity"], p["code"], re.search(r"2019-09/\w+\.\w+", p["message"]).group(0))  # type: ignore[union-attr]
        for f, p in found.items()
    }
    assert got == expect
    assert "8,000 x 6,000 pixels" in found["articles[3].image.src"]["message"]
    assert found["articles[2].image.src"]["line"] == _line_of(workspace, "2019-09/nowhere.jpg")
    line = _line_of(workspace, "src: 2019-09/notes.jpg")
    assert found["articles[1].image.src"]["line"] == line
    assert "is not a picture" in found["articles[1].image.src"]["message"]

    # build refuses and writes nothing.
    b = cli("build", "2019-09")
    assert b.code == 1 and not (workspace / "build" / "2019-09").exists()


def test_file_over_25_mb_is_refused_before_reading_it_as_a_picture(
    cli: Cli, workspace: Path
) -> None:
    _put(workspace, "huge.jpg", camera_photo() + b"\0" * 25_000_000)
    _use(workspace, {FIRST_SRC: "src: 2019-09/huge.jpg"})
    r = cli("check", "2019-09")
    assert r.code == 1
    assert (
        "articles[1].image.src: 2019-09/huge.jpg is 2" in r.err
        and "over 25.0 MB are refused" in r.err
    )


def test_logo_from_a_file_beside_newsletter_toml(cli: Cli, workspace: Path) -> None:
    (workspace / "brand").mkdir()
    (workspace / "brand" / "logo.png").write_bytes(transparent_png(720, 180))
    toml = workspace / "newsletter.toml"
    toml.write_text(
        re.sub(r'logo_url = "[^"]*"', 'logo_url = "brand/logo.png"', toml.read_text("utf-8")),
        "utf-8",
    )
    r = cli("build", "2019-09")
    assert r.code == 0, r.err
    [logo] = list((workspace / "build" / "2019-09" / "images").iterdir())
    with Image.open(logo) as im:
        assert im.size == (360, 90)  # twice the logo_width of 180: sharp, no heavier
    html = (workspace / "build" / "2019-09" / "email.html").read_text("utf-8")
    assert f'src="{BASE}{logo.name}"' in html

    toml.write_text(toml.read_text("utf-8").replace("brand/logo.png", "brand/nope.png"), "utf-8")
    c = cli("check", "2019-09")
    assert (
        c.code == 1
        and "organisation.logo_url: the picture file brand/nope.png is not there" in c.err
    )


def test_a_path_on_one_computer_is_refused_with_what_to_do(cli: Cli, workspace: Path) -> None:
    _use(workspace, {FIRST_SRC: 'src: "C:\\\\Users\\\\maria\\\\Pictures\\\\market.jpg"'})
    r = cli("check", "2019-09")
    assert r.code == 1
    assert "articles[1].image.src: is a place on one computer" in r.err

    (workspace.parent / "elsewhere.jpg").write_bytes(camera_photo())
    _use(workspace, {'"C:\\\\Users\\\\maria\\\\Pictures\\\\market.jpg"': "../../elsewhere.jpg"})
    r = cli("check", "2019-09")
    assert r.code == 1
    assert "articles[1].image.src: ../../elsewhere.jpg is outside the newsletter's folder" in r.err


def test_store_upload_keeps_a_picked_picture_beside_the_issue(workspace: Path) -> None:
    from newsletter.pictures import store_upload

    issue = workspace / "issues" / "2019-10.yaml"
    photo = camera_photo()
    src = store_upload(issue, "Mercado Central (2).JPEG", photo)
    assert src == "2019-10/mercado-central-2.jpg"
    assert (workspace / "issues" / "2019-10" / "mercado-central-2.jpg").read_bytes() == photo
    assert store_upload(issue, "Mercado Central (2).JPEG", photo) == src  # the same picture
    assert store_upload(issue, "mercado central (2).jpg", transparent_png()) == (
        "2019-10/mercado-central-2.png"  # named by what it is, not by what it is called
    )
    buf = io.BytesIO()
    Image.new("RGB", (900, 600), (1, 2, 3)).save(buf, "JPEG")
    assert store_upload(issue, "Mercado-Central-2.jpg", buf.getvalue()) == (
        "2019-10/mercado-central-2-2.jpg"  # another picture never replaces one of that name
    )
    for bad in ("../evil.jpg", "sub/evil.jpg", "..\\evil.jpg", ".hidden.jpg", ""):
        with pytest.raises(NewsletterError):
            store_upload(issue, bad, photo)
    with pytest.raises(NewsletterError, match="is not a picture"):
        store_upload(issue, "notes.jpg", b"just text")
    with pytest.raises(NewsletterError, match="megapixels"):
        store_upload(issue, "bomb.png", bomb_header())
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(200)  # an iPhone photo's start
    with pytest.raises(NewsletterError, match="HEIC photo") as refused:
        store_upload(issue, "IMG_0001.HEIC", heic)
    assert refused.value.hint is not None and "JPEG" in refused.value.hint
    assert sorted(p.name for p in (workspace / "issues" / "2019-10").iterdir()) == [
        "mercado-central-2-2.jpg",
        "mercado-central-2.jpg",
        "mercado-central-2.png",
    ]
    assert not (workspace / "issues" / "evil.jpg").exists()


def test_preview_shows_the_pictures_before_they_are_published(workspace: Path) -> None:
    from starlette.testclient import TestClient

    from newsletter.config import Workspace
    from newsletter.preview import create_app

    _put(workspace, "market.jpg", camera_photo())
    _use(workspace, {FIRST_SRC: "src: 2019-09/market.jpg"})
    ws = Workspace(workspace)
    client = TestClient(create_app(ws, workspace / ISSUE))
    html = client.get("/email.html").text
    found = re.search(r'src="/images/(market-[0-9a-f]{8}\.jpg)"', html)
    assert found, html[:3000]
    assert BASE not in html
    answer = client.get(f"/images/{found.group(1)}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(answer.content)) as im:
        assert im.size == (1104, 1472)
    assert client.get("/images/other-00000000.jpg").status_code == 404
    assert f'src="/images/{found.group(1)}"' in client.get("/web.html").text


def test_an_animated_gif_stays_animated_without_its_comment(cli: Cli, workspace: Path) -> None:
    frames = [
        Image.frombytes(
            "L", (1500, 300), bytes((i * 40 + x) % 256 for x in range(1500 * 300))
        ).convert("P")
        for i in range(3)
    ]
    buf = io.BytesIO()
    frames[0].save(
        buf, "GIF", save_all=True, append_images=frames[1:], duration=120, comment=b"at the shelter"
    )
    _put(workspace, "dance.gif", buf.getvalue())
    _use(workspace, {FIRST_SRC: "src: 2019-09/dance.gif"})
    r = cli("build", "2019-09")
    assert r.code == 0, r.err
    [gif] = list((workspace / "build" / "2019-09" / "images").iterdir())
    assert re.fullmatch(r"dance-[0-9a-f]{8}\.gif", gif.name)
    assert b"shelter" not in gif.read_bytes()
    with Image.open(gif) as im:
        assert im.size == (1104, 221) and getattr(im, "n_frames", 1) == 3
        assert im.info.get("duration") == 120 and "comment" not in im.info
