"""``python -m bench`` (``make bench``): run every benchmark script in bench/ and collect its JSON.

A benchmark is ``bench/<name>.py`` (names starting with ``_`` are helpers) with a ``main()`` that
returns a dict; the runner writes it to ``bench/results/<name>.json``. Run one with
``python -m bench <name>``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def run(name: str) -> dict:
    module = importlib.import_module(f"bench.{name}")
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    result = module.main()
    result = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus(),
                    # other work on the machine skews the figures; a load above the CPU count says so
                    "loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)},
        **result,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def main(argv: list[str]) -> int:
    names = argv or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"bench: unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(discover())}")
        return 2
    failed = []
    for name in names:
        print(f"bench: running {name} ...", flush=True)
        try:
            result = run(name)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"bench: {name} FAILED: {exc!r}", flush=True)
            failed.append(name)
            continue
        print(f"bench: {name} done in {result['seconds']} s -> bench/results/{name}.json", flush=True)
        if "summary" in result:
            print(result["summary"], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
