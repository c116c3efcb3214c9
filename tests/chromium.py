"""Headless Chromium for tests that open a page: find the browser, dump the DOM, take a screenshot.

``make test`` installs Debian's ``chromium`` where it is missing. A test that needs the browser and
cannot find it fails and says how to install it; setting ``TRACECT_SKIP_BROWSER=1`` turns that failure
into a skip, for machines where a browser cannot be installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

OPT_OUT = "TRACECT_SKIP_BROWSER"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    """Path of a Chromium executable (``TRACECT_CHROMIUM`` overrides the search of PATH)."""
    exe = next(filter(None, map(shutil.which, CANDIDATES)), None)
    if os.environ.get("TRACECT_CHROMIUM"):
        exe = shutil.which(os.environ["TRACECT_CHROMIUM"])
        if exe is None:
            pytest.fail(f"TRACECT_CHROMIUM={os.environ['TRACECT_CHROMIUM']} is not an executable", pytrace=False)
    if exe:
        return exe
    msg = ("headless Chromium is needed to check the HTML report and none was found on PATH. Install it "
           "with `make test` (it runs `apt-get install -y chromium` where apt-get is available) or "
           f"`sudo apt-get install -y chromium`, point TRACECT_CHROMIUM at a Chromium binary, or set "
           f"{OPT_OUT}=1 to skip the browser tests.")
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(f"no Chromium on PATH and {OPT_OUT}=1: the browser check of the HTML report is skipped")
    pytest.fail(msg, pytrace=False)


def run_chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a throw-away profile and no network."""
    exe = find_chromium()
    with tempfile.TemporaryDirectory(prefix="tracect-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
               "--disable-background-networking", "--disable-sync", "--hide-scrollbars",
               # Every host name fails to resolve: the page must render from the file alone.
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *args]
        # HOME in the profile: the launcher and crash handler write there, and tests share a machine.
        env = {**os.environ, "HOME": profile}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(url: str, budget_ms: int = 10000) -> str:
    """The page's DOM after its scripts ran; ``budget_ms`` of virtual time lets promises and image
    decoding settle before the dump."""
    return run_chromium([f"--virtual-time-budget={budget_ms}", "--dump-dom", url]).stdout


def screenshot(url: str, out: str | Path, size: tuple[int, int] = (1400, 3000), budget_ms: int = 5000) -> Path:
    run_chromium([f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}",
                  f"--screenshot={out}", url])
    if not Path(out).is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return Path(out)
