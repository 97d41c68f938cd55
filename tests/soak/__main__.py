"""`python -m tests.soak --minutes N --seed S` (scripts/soak.sh): exit 0 when every invariant
held, 1 when one broke (the report says which; the seed replays the run)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
from pathlib import Path

from tests.soak.run import soak
from tests.soak.schedule import FAULTS


def main() -> int:
    """Parse the arguments, run the soak, print the report."""
    parser = argparse.ArgumentParser(prog="soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep logs and databases here (default: a temporary folder)")
    parser.add_argument("--settle", type=float, default=90.0, help="seconds to settle at most")
    parser.add_argument("--skip", action="append", default=[], choices=sorted(FAULTS),
                        help="leave one fault out (repeatable)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"lockbridge-soak-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, filename=workdir / "soak.log",
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"soak: seed {seed} (replay: bash scripts/soak.sh --minutes {args.minutes:g} "
          f"--seed {seed}); logs and databases in {workdir}", flush=True)
    report = asyncio.run(soak(args.minutes * 60, seed, workdir, settle_s=args.settle,
                              skip=frozenset(args.skip)))
    print(report.text(), flush=True)
    (workdir / "report.txt").write_text(report.text() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
