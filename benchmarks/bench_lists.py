"""Benchmark: validate a 1,000,000-row subscriber list through Audience.

Targets (from the issue): >= 30,000 rows/s validated and <= 300 MB peak RSS.

The list is synthetic but shaped like a real export: about 200 domains with a
skewed popularity (a few webmail providers dominate), a few IDN domains, names
with accents, tags, consent text, ~0.5 % invalid addresses and ~1 % duplicates
(same address, other case).  It is written to a temporary folder by this process;
the measured part runs in a fresh interpreter so that its peak RSS (VmHWM) is its
own and not the generator's.

    .venv/bin/python benchmarks/bench_lists.py [ROWS]
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 30_000
TARGET_PEAK_MB = 300

FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "Diego",
    "Esther",
    "François",
    "Grace",
    "Hugo",
    "Ingrid",
    "José",
    "Kwame",
    "Léa",
    "Mateo",
    "Nadia",
    "Olu",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Tomás",
    "Uma",
    "Victor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoë",
]
LAST = [
    "López",
    "Carter",
    "Martin",
    "Ramírez",
    "Moyo",
    "Dubois",
    "Okafor",
    "Schmidt",
    "García",
    "Nguyen",
    "Kowalski",
    "Rossi",
    "Silva",
    "Haddad",
    "Tanaka",
    "Müller",
]
TAGS = ["partners", "press", "donors", "volunteers", "board", "costa-rica", "guatemala"]
INVALID = [
    "no-at-sign.example.org",
    "two..dots@example.org",
    "space in@example.org",
    "trailing.dot.@example.org",
    "user@",
    "@example.org",
    "user@localhost",
    "user@exa_mple.org",
    "user@@example.org",
    "user@example..org",
]


def _domains(count: int = 200) -> tuple[list[str], list[float]]:
    big = [
        "gmail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "icloud.com",
        "gmx.de",
        "web.de",
        "orange.fr",
        "libero.it",
        "proton.me",
    ]
    idn = ["bücher.de", "xn--bcher-kva.de", "münchen-mail.de", "correo.españa.es"]
    rest = [
        f"org{i}.example{'-ngo' if i % 3 else ''}.{('org', 'net', 'com', 'ca')[i % 4]}"
        for i in range(count - len(big) - len(idn))
    ]
    names = big + idn + rest
    weights = [40.0 / (i + 1) for i in range(len(big))] + [0.2] * len(idn) + [0.3] * len(rest)
    return names, weights


def generate(path: Path, rows: int, seed: int = 20190901) -> dict[str, int]:
    """Write the synthetic list and a suppression file next to it (1 in 500 addresses).

    Returns how many invalid, duplicate and suppressed rows it holds.
    """
    rng = random.Random(seed)
    domains, weights = _domains()
    chosen = rng.choices(domains, weights, k=rows)
    earlier: list[str] = []
    invalid = duplicates = 0
    suppressed: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,language,tags,subscribed_at,consent,company\r\n")
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            roll = rng.random()
            if roll < 0.005:
                email = rng.choice(INVALID)
                invalid += 1
            elif roll < 0.015 and earlier:
                email = rng.choice(earlier).upper()
                duplicates += 1
            else:
                local = f"{first.lower()}.{last.lower()}{i}".encode("ascii", "ignore").decode()
                email = f"{local}@{chosen[i]}"
                if rng.random() < 0.05:  # hand-typed: stray spaces, upper-case domain
                    email = f" {local}@{chosen[i].upper()} "
                if i % 500 == 7:
                    suppressed.append(email.strip().lower())
                if len(earlier) < 5000:
                    earlier.append(email.strip())
                elif rng.random() < 0.01:
                    earlier[rng.randrange(5000)] = email.strip()
            tags = ";".join(rng.sample(TAGS, rng.randint(0, 2)))
            name = f"{first} {last}"
            consent = '"signup form, www.example.org"' if i % 2 else "event sheet"
            out.write(
                f"{email},{name},{rng.choice(['en', 'es', 'fr'])},{tags},"
                f"2019-0{1 + i % 9}-1{i % 10},{consent},Org {i % 977}\r\n"
            )
    (path.parent / "suppressions.csv").write_text(
        "email,reason,source,at\n"
        + "".join(f"{e},unsubscribed,one-click,2019-08-30T10:12:00+00:00\n" for e in suppressed),
        encoding="utf-8",
    )
    return {"invalid": invalid, "duplicates": duplicates, "suppressed": len(suppressed)}


def _measure(root: str) -> None:
    """Child process: iterate the Audience once, print JSON figures."""
    from newsletter.config import Workspace
    from newsletter.subscribers import Audience

    baseline = _vm_hwm_mb()
    audience = Audience(Workspace(Path(root)), ["bench"])
    start = time.perf_counter()
    for _ in audience:
        pass
    elapsed = time.perf_counter() - start
    plain = _plain_validator_rate(Path(root) / "subscribers" / "bench.csv")
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "rows": audience.rows,
                "valid": audience.valid,
                "invalid": audience.invalid,
                "duplicates": audience.duplicates,
                "suppressed": audience.suppressed,
                "baseline_mb": baseline,
                "peak_mb": _vm_hwm_mb(),
                "plain_validator_per_s": plain,
            }
        )
    )


def _plain_validator_rate(path: Path, count: int = 20_000) -> float:
    """Addresses/s of email-validator called once per address, for comparison."""
    import contextlib
    import csv

    from email_validator import EmailNotValidError, validate_email

    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        addresses = [row[0].strip() for _, row in zip(range(count), reader, strict=False)]
    start = time.perf_counter()
    for address in addresses:
        with contextlib.suppress(EmailNotValidError):
            validate_email(address, check_deliverability=False)
    return len(addresses) / (time.perf_counter() - start)


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run(rows: int = 1_000_000) -> dict[str, float]:
    """Generate, validate in a fresh process, and return rows_per_s, peak_mb and counts."""
    with tempfile.TemporaryDirectory(prefix="bench-lists-") as tmp:
        root = Path(tmp)
        (root / "subscribers").mkdir()
        expected = generate(root / "subscribers" / "bench.csv", rows)
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", str(root)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures: dict[str, float] = json.loads(proc.stdout)
    figures["rows_per_s"] = figures["rows"] / figures["seconds"]
    figures["expected_invalid"] = expected["invalid"]
    figures["generated_duplicates"] = expected["duplicates"]
    figures["generated_suppressed"] = expected["suppressed"]
    return figures


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    f = run(rows)
    print(f"subscriber list validation, {int(f['rows']):,} rows (Audience, one list)")
    print(f"  time        {f['seconds']:.2f} s")
    print(f"  throughput  {f['rows_per_s']:,.0f} rows/s   (target >= {TARGET_ROWS_PER_S:,})")
    print(
        f"  peak RSS    {f['peak_mb']:.0f} MB   (target <= {TARGET_PEAK_MB}; "
        f"{f['baseline_mb']:.0f} MB after imports)"
    )
    print(
        f"  counted     valid {int(f['valid']):,}, invalid {int(f['invalid']):,} "
        f"(generated {int(f['expected_invalid']):,}), duplicates {int(f['duplicates']):,} "
        f"(generated {int(f['generated_duplicates']):,}), "
        f"suppressed {int(f['suppressed']):,} (of {int(f['generated_suppressed']):,} listed)"
    )
    print(
        f"  reference   plain email-validator on the same addresses: "
        f"{f['plain_validator_per_s']:,.0f} addresses/s"
    )
    ok = f["rows_per_s"] >= TARGET_ROWS_PER_S and f["peak_mb"] <= TARGET_PEAK_MB
    print("  result      " + ("targets met" if ok else "TARGETS MISSED"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        _measure(sys.argv[2])
    else:
        main()
