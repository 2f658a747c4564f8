"""The screenshot of a study's report in docs/ and the README, taken by the browser code of the
report's test (tests/browser.py): headless Chromium opens a report file and saves a PNG.

    hpo demo                                   # writes demo-report.html
    .venv/bin/python scripts/report_screenshot.py demo-report.html docs/report.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.browser

from tests.browser import visit


def main() -> int:
    """Screenshot argv[1] (an HTML report) into argv[2] (a PNG)."""
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    report, target = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as folder:
        seen = visit({"report": report.as_uri()}, password="", screenshots=Path(folder))["report"]
        if seen.errors:
            print(f"the page logged errors: {seen.errors}", file=sys.stderr)
            return 1
        target.write_bytes((Path(folder) / "report.png").read_bytes())
    print(f"{target}: {len(seen.drawn)} plots drawn ({', '.join(seen.drawn)}); not drawn: {seen.messages or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
