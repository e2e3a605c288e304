"""Data management figures on a generated chat dataset: import, quality report and near-dedup time, peak
memory, and the recall of planted near duplicates and planted personal data (with false positives).

    PYTHONPATH=src python benchmarks/data.py [--records 100000] [--planted 1000] [--threshold 0.8]

The set is random sentences over about 250 common English words. ``--planted`` near duplicates are copies of random
records with one or two words replaced or inserted and the case or punctuation changed; ``--planted``
records get one piece of personal data each (email, phone, Luhn-valid card, IPv4, mod-97-valid IBAN), and
as many others get look-alikes that must not be found (Luhn-invalid cards, IBANs with a wrong checksum,
version strings, short numbers). Everything runs through the services on a temporary TUNEFORGE_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

WORDS = """the be to of and a in that have it for not on with he as you do at this but his by from they we say her
she or an will my one all would there their what so up out if about who get which go me when make can like time no
just him know take people into year your good some could them see other than then now look only come its over think
also back after use two how our work first well way even new want because any these give day most us is was are
account order refund password router printer invoice delivery screen battery laptop phone cable charger update
install error message support ticket weekend morning quickly slowly again never always often today tomorrow please
help problem issue reset restart change cancel return replace open close send receive check pay bill card number
email address name city street home office store shop price cost money week month hour minute second late early
small large broken working new old red blue green black white fast slow easy hard right wrong left top bottom
""".split()


def vocabulary() -> list[str]:
    return sorted(set(WORDS))


def luhn_number(rng: random.Random, valid: bool) -> str:
    from stdnum import luhn

    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    digit = luhn.calc_check_digit(body)
    if not valid:
        digit = str((int(digit) + 1 + rng.randrange(8)) % 10)
    number = body + digit
    return " ".join(number[i:i + 4] for i in range(0, 16, 4))


def iban(rng: random.Random, valid: bool) -> str:
    from stdnum.iso7064 import mod_97_10

    bban = "".join(str(rng.randrange(10)) for _ in range(18))
    check = mod_97_10.calc_check_digits(bban + "DE")
    if not valid:
        check = f"{(int(check) + 1 + rng.randrange(90)) % 100:02d}"
        if check in ("00", "01"):
            check = "02"
    return "DE" + check + bban


PII = {
    "EMAIL": lambda rng: f"{rng.choice('abcdefg')}{rng.randrange(10**6)}@example{rng.randrange(99)}.com",
    "PHONE": lambda rng: f"+1 {rng.choice(['212', '415', '646', '312'])}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
    "CREDIT_CARD": lambda rng: luhn_number(rng, True),
    "IP_ADDRESS": lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
    "IBAN": lambda rng: iban(rng, True),
}
DECOYS = [lambda rng: luhn_number(rng, False), lambda rng: iban(rng, False),
          lambda rng: f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
          lambda rng: f"order {rng.randint(1000, 99999)}", lambda rng: f"{rng.randint(1, 12)}:{rng.randint(10, 59)}"]


def generate(n: int, planted: int, seed: int) -> tuple[list[dict], dict[int, int], dict[int, str], set[int]]:
    """Records, planted near duplicates (copy -> source), planted PII (record -> type), decoy records."""
    rng = random.Random(seed)
    words = vocabulary()

    def sentence(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k)).capitalize() + "."

    base = n - planted
    users = [sentence(rng.randint(25, 45)) for _ in range(base)]
    answers = [sentence(rng.randint(10, 30)) for _ in range(base)]
    pii, decoys = {}, set()
    for index in rng.sample(range(base), 2 * planted):
        if len(pii) < planted:
            kind = list(PII)[len(pii) % len(PII)]
            users[index] += f" Contact: {PII[kind](rng)} please."
            pii[index] = kind
        else:
            users[index] += f" Ref {rng.choice(DECOYS)(rng)} please."
            decoys.add(index)
    near = {}
    for _ in range(planted):
        source = rng.randrange(base)
        tokens = users[source].split()
        for _ in range(rng.randint(1, 2)):
            position = rng.randrange(len(tokens) - 7)  # not inside the personal data the record may end with
            if rng.random() < 0.5:
                tokens[position] = rng.choice(words)
            else:
                tokens.insert(position, rng.choice(words))
        text = " ".join(tokens)
        near[len(users)] = source
        if source in pii:  # the copy carries its source's personal data (or decoy) along
            pii[len(users)] = pii[source]
        if source in decoys:
            decoys.add(len(users))
        users.append(text.upper() if rng.random() < 0.3 else text.rstrip(".") + "!")
        answers.append(answers[source])
    records = [{"messages": [{"role": "system", "content": "You are a helpful support agent."},
                             {"role": "user", "content": u}, {"role": "assistant", "content": a}]}
               for u, a in zip(users, answers)]
    return records, near, pii, decoys


def near_recall(report: dict, near: dict[int, int]) -> tuple[float, int]:
    """Planted copies clustered with their source, and records clustered that were never planted together."""
    cluster_of = {}
    for number, cluster in enumerate(report["duplicates"]["exact_clusters"] + report["duplicates"]["near_clusters"]):
        for member in cluster:
            cluster_of.setdefault(member, set()).add(number)
    found = sum(1 for copy, source in near.items() if cluster_of.get(copy, set()) & cluster_of.get(source, set()))
    involved = set(near) | set(near.values())
    false_positives = sum(1 for member in cluster_of if member not in involved)
    return found / len(near), false_positives


def pii_recall(report: dict, pii: dict[int, str]) -> tuple[float, int]:
    """Planted PII found with its type, and findings in records where none was planted (decoys included)."""
    findings = report["personal_data"]["findings"]
    hit = {(f["record"], f["type"]) for f in findings}
    found = sum(1 for record, kind in pii.items() if (record, kind) in hit)
    false_positives = sum(1 for f in findings if pii.get(f["record"]) != f["type"])
    return found / len(pii), false_positives


def timed(figures: dict, name: str, call):  # noqa: ANN001, ANN201 - a benchmark helper
    """Run ``call``; record its wall time and the CPU time of this process (the wall time depends on the
    machine's other load, the CPU time much less)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    figures[f"{name}_wall_s"] = time.perf_counter() - wall
    figures[f"{name}_cpu_s"] = time.process_time() - cpu
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from tuneforge.services import datasets as ds
    from tuneforge.services.data_reports import DataReportOptions, report_data
    from tuneforge.services.platform import open_platform
    from tuneforge.settings import Settings

    load = f"{os.getloadavg()[0]:.2f}"
    started = time.perf_counter()
    records, near, pii, decoys = generate(args.records, args.planted, args.seed)
    home = Path(tempfile.mkdtemp(prefix="tuneforge-data-bench-"))
    source = home / "chat.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"generated {len(records):,} records ({source.stat().st_size / 2**20:.1f} MiB) in "
          f"{time.perf_counter() - started:.1f} s")
    platform = open_platform(Settings(home=str(home), max_upload_bytes=2**31))
    figures = {}
    timed(figures, "import", lambda: ds.import_data(platform, source, project="bench", name="chat"))
    report = timed(figures, "report", lambda: report_data(
        platform, "chat:1", DataReportOptions(threshold=args.threshold), project="bench", output=home / "report"))
    cleaned = timed(figures, "clean_near_dedup", lambda: ds.clean_data(
        platform, "chat:1", ds.CleanOptions(dedup="near", threshold=args.threshold), project="bench"))
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["near_recall"], figures["near_false_positives"] = near_recall(report, near)
    figures["pii_recall"], figures["pii_false_positives"] = pii_recall(report, pii)
    figures["removed_by_near_dedup"] = cleaned.version.details["removed_counts"]["duplicate"]
    figures["score"] = report["score"]
    platform.close()
    print(f"records {len(records):,}; planted: {len(near)} near duplicates, {len(pii)} records with PII, "
          f"{len(decoys)} with look-alikes; load average before/after: {load} / {os.getloadavg()[0]:.2f}")
    for name, value in figures.items():
        print(f"  {name:24} {value:.3f}" if isinstance(value, float) else f"  {name:24} {value}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
