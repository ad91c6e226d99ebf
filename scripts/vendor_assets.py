"""Vendor the dashboard's front-end libraries from npm into the package's static files.

Run at build time (`python scripts/vendor_assets.py`), never at run time: it installs the
pinned packages with `npm install --prefix <temporary directory>`, copies the minified
files and their licences into src/perfmark/dashboard/static/vendor/, and writes a
manifest with each file's version and SHA-256. The copied files are committed, so the
dashboard works with no internet and `make demo` needs no npm.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "perfmark" / "dashboard" / "static" / "vendor"
NPM_TIMEOUT_S = 600


@dataclass(frozen=True)
class Asset:
    """One npm package: the version pinned, and the files copied (source -> name in vendor/)."""

    package: str
    version: str
    files: tuple[tuple[str, str], ...]


#: htmx stays on the 2.x line: 4.x changed attribute inheritance and event names.
ASSETS = (
    Asset(
        "htmx.org",
        "2.0.11",
        (("dist/htmx.min.js", "htmx.min.js"), ("LICENSE", "htmx.LICENSE.txt")),
    ),
    Asset(
        "@picocss/pico",
        "2.1.1",
        (("css/pico.min.css", "pico.min.css"), ("LICENSE.md", "pico.LICENSE.md")),
    ),
    Asset(
        "chart.js",
        "4.6.1",
        (("dist/chart.umd.min.js", "chart.umd.min.js"), ("LICENSE.md", "chart.js.LICENSE.md")),
    ),
    # Bundled inside chart.umd.min.js; its licence travels with it.
    Asset("@kurkle/color", "", (("LICENSE.md", "kurkle-color.LICENSE.md"),)),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(destination: Path = VENDOR) -> dict[str, dict[str, str]]:
    """Install the pinned packages in a temporary directory and copy their files over."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed; install Node.js (apt-get install npm) first")
    specs = [f"{asset.package}@{asset.version}" for asset in ASSETS if asset.version]
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="perfmark-vendor-") as temporary:
        # npm and the pinned package names are ours, not input: nothing untrusted runs.
        subprocess.run(  # noqa: S603
            [
                npm,
                "install",
                "--prefix",
                temporary,
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--save-exact",
                *specs,
            ],
            check=True,
            timeout=NPM_TIMEOUT_S,
        )
        modules = Path(temporary) / "node_modules"
        destination.mkdir(parents=True, exist_ok=True)
        for asset in ASSETS:
            package_dir = modules / asset.package
            installed = json.loads((package_dir / "package.json").read_text())["version"]
            for source, name in asset.files:
                target = destination / name
                shutil.copyfile(package_dir / source, target)
                manifest[name] = {
                    "package": asset.package,
                    "version": installed,
                    "sha256": _sha256(target),
                }
    (destination / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--to", type=Path, default=VENDOR, help="destination directory")
    arguments = parser.parse_args()
    manifest = vendor(arguments.to)
    for name, entry in sorted(manifest.items()):
        print(f"{name:28} {entry['package']}@{entry['version']}", file=sys.stdout)


if __name__ == "__main__":
    main()
