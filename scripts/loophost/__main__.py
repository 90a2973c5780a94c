"""`python3 scripts/loophost up|down DIR` and `base-image [--build]` (see cli.py)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a directory: scripts/ is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loophost.cli import main  # noqa: E402

sys.exit(main())
