"""How long `check --links` and the preparation of camera photos take.

    .venv/bin/python benchmarks/bench_links.py [--links 200] [--delay 0.2] [--sites 8]
                                                [--photos 8] [--rounds 3]

Two figures, printed, never asserted (timing belongs here, not in tests):

* ``newsletter check --links=fresh`` as a user runs it (a whole process), on an issue of
  40 articles holding ``--links`` links, against the test suite's web server
  (tests/linkserver.py) on 127.0.0.1 answering each request after ``--delay`` seconds.
  The links are spread over ``--sites`` sites (ports), as an issue's links are over many
  sites: at most 2 requests go to one site at a time and 8 in all, so with 200 links of
  200 ms the floor is 200 / 8 x 0.2 = 5 s.  Target: under 8 s.
* preparing ``--photos`` camera-size photos (4000 x 3000 JPEG, about 4 MB each, with EXIF):
  in-process :func:`newsletter.pictures.prepare` per photo, then ``newsletter build`` of an
  issue holding them all with an empty picture cache (every photo prepared) and again
  with it filled (what `check`, `build` and `preview` cost after the first time).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "fixtures" / "workspace"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from linkserver import LinkServer  # noqa: E402

TARGET_LINKS_S = 8.0


def _workspace(root: Path) -> Path:
    ws = root / "ws"
    shutil.copytree(SAMPLE, ws)
    shutil.copytree(REPO / "templates", ws / "templates")
    return ws


def _cli(ws: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return time.perf_counter() - started, proc


def _links_issue(server: LinkServer, links: int, sites: int) -> str:
    articles = 40
    per_article = max(1, links // articles)
    lines = [
        'subject: "Two hundred links"',
        'preheader: "An issue full of links, to time how long checking them all takes"',
        "date: 2019-09-30",
        "articles:",
    ]
    n = 0
    for a in range(articles):
        urls = []
        for _ in range(per_article):
            urls.append(server.url(f"/delay/{n}", n % sites))
            n += 1
        summary = " ".join(f"[link {i}]({u})" for i, u in enumerate(urls[1:], 1)) or "Text."
        lines += [
            f'  - title: "Article {a + 1}"',
            "    summary: |",
            f"      {summary}",
            f"    url: {urls[0]}",
        ]
    return "\n".join(lines) + "\n"


def bench_links(args: argparse.Namespace, root: Path) -> None:
    server = LinkServer(delay_seconds=args.delay).start(sites=args.sites)
    try:
        ws = _workspace(root / "links")
        (ws / "issues" / "2019-09.yaml").write_text(
            _links_issue(server, args.links, args.sites), "utf-8"
        )
        toml = ws / "newsletter.toml"
        text = toml.read_text("utf-8")
        for old in (
            "https://www.example.org/assets/newsletter-logo.png",
            "https://www.facebook.com/example",
            "https://x.com/example",
            "https://www.youtube.com/@example",
            "https://www.example.org/",
        ):
            text = text.replace(f'"{old}"', f'"{server.url("/delay/footer")}"')
        text = text.replace("logo_url = ", "# logo_url = ")
        toml.write_text(text, "utf-8")
        times = []
        for _ in range(args.rounds):
            before = len(server.requests)
            elapsed, proc = _cli(ws, "check", "2019-09", "--links=fresh", "--format", "json")
            asked = len(server.requests) - before
            if '"link_' in proc.stdout and "link_is_not" not in proc.stdout:
                print(proc.stdout[:2000])
            times.append(elapsed)
        cached, _ = _cli(ws, "check", "2019-09", "--links", "--format", "json")
        offline, _ = _cli(ws, "check", "2019-09", "--format", "json")
        floor = args.links / 8 * args.delay
        median = statistics.median(times)
        verdict = "ok" if median < TARGET_LINKS_S else "OVER TARGET"
        print(
            f"check --links=fresh, {asked} requests ({args.links} links + footer) answering "
            f"after {args.delay * 1000:.0f} ms on {args.sites} sites:"
        )
        print(
            f"  median {median:.2f} s of {args.rounds} (runs: "
            + ", ".join(f"{t:.2f}" for t in times)
            + f"); floor at 8 at once {floor:.2f} s; target < {TARGET_LINKS_S:.0f} s: {verdict}"
        )
        print(f"  most requests in flight at once: {server.most_in_flight} (limit 8)")
        print(
            f"  check --links from the 24-hour cache: {cached:.2f} s; check offline: {offline:.2f} s"
        )
    finally:
        server.stop()


def _photo(seed: int) -> bytes:
    """A camera-like 4000x3000 JPEG: smooth gradients with sensor noise, EXIF and GPS."""
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((4000, 3000))
    noise = Image.effect_noise((4000, 3000), 40 + seed)
    r = Image.blend(gradient, noise, 0.35)
    g = Image.blend(gradient.rotate(90, expand=False), noise, 0.25)
    b = Image.blend(gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), noise, 0.3)
    im = Image.merge("RGB", (r, g, b))
    exif = Image.Exif()
    exif[0x0112] = 6 if seed % 2 else 1
    exif[0x010F] = "BenchCam"
    exif[0x8825] = {1: "N", 2: (9.0, 56.0, float(seed)), 3: "W", 4: (84.0, 5.0, 0.0)}
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def bench_photos(args: argparse.Namespace, root: Path) -> None:
    from newsletter.pictures import prepare

    photos = [_photo(i) for i in range(args.photos)]
    sizes = [len(p) for p in photos]
    per_photo = []
    out_sizes = []
    for i, data in enumerate(photos):
        started = time.perf_counter()
        made = prepare(data, f"photo-{i}")
        per_photo.append(time.perf_counter() - started)
        out_sizes.append(len(made.data))
    print(
        f"prepare(), {args.photos} photos 4000x3000 of {statistics.mean(sizes) / 1e6:.1f} MB "
        f"on average -> {statistics.mean(out_sizes) / 1e3:.0f} kB, 1104 px wide:"
    )
    print(
        f"  {sum(per_photo):.2f} s in all, {statistics.median(per_photo) * 1000:.0f} ms per photo "
        f"(median; slowest {max(per_photo) * 1000:.0f} ms)"
    )
    ws = _workspace(root / "photos")
    folder = ws / "issues" / "2019-09"
    folder.mkdir()
    issue = ws / "issues" / "2019-09.yaml"
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(issue.read_text("utf-8"))
    count = 0
    for i, photo in enumerate(photos):
        if i >= len(data["articles"]):
            break  # the sample has 8 articles: one photo each
        (folder / f"photo-{i}.jpg").write_bytes(photo)
        data["articles"][i]["image"] = {"src": f"2019-09/photo-{i}.jpg", "alt": f"Photo {i}"}
        count += 1
    with issue.open("w", encoding="utf-8") as f:
        yaml.dump(data, f)
    cold, proc = _cli(ws, "build", "2019-09")
    if proc.returncode:
        print(proc.stderr)
    warm, _ = _cli(ws, "build", "2019-09")
    print(
        f"newsletter build of the sample issue with {count} of them, one per article: "
        f"{cold:.2f} s with an empty picture cache, {warm:.2f} s with it filled"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-links-") as tmp:
        bench_links(args, Path(tmp))
        bench_photos(args, Path(tmp))


if __name__ == "__main__":
    main()
