"""A private apt setup: downloads .debs without touching the host's apt configuration.

The lab needs packages from the host's Debian release (kernel, qemu-ga 7.2) and from its
``-backports`` suite (qemu-ga 10.0). Rather than adding a suite to ``/etc/apt``, it writes
its own ``sources.list`` (the same Debian mirror URIs the host already uses, plus the
backports suite on the URI the host uses for the release itself) and points apt at a
private state and cache directory. The host's dpkg status is still read, so apt knows
what is installed, but nothing on the host is installed or changed.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from virt_qga.lab.errors import SETUP_HINT, LabError
from virt_qga.lab.paths import LabPaths
from virt_qga.lab.proc import run

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Source:
    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str | None

    def line(self) -> str:
        opts = f"[signed-by={self.signed_by}] " if self.signed_by else ""
        return f"deb {opts}{self.uri} {self.suite} {' '.join(self.components)}"


def host_codename() -> str:
    """The Debian codename of the host (``bookworm``), or a LabError when not Debian-like."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise LabError("the lab needs a Debian-like host with apt-get and dpkg; none found")
    try:
        text = Path("/etc/os-release").read_text()
    except OSError as exc:
        raise LabError("cannot read /etc/os-release: the lab needs a Debian host") from exc
    fields = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if not codename:
        raise LabError("/etc/os-release has no VERSION_CODENAME: the lab needs Debian 12 (bookworm)")
    return codename


def _parse_one_line(text: str) -> list[Source]:
    out: list[Source] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        signed_by = None
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = line[4:].strip()
        if m:
            for opt in m.group(1).split():
                if opt.startswith("signed-by="):
                    signed_by = opt.split("=", 1)[1]
            rest = m.group(2)
        parts = rest.split()
        if len(parts) >= 3:
            out.append(Source(parts[0], parts[1], tuple(parts[2:]), signed_by))
    return out


def _parse_deb822(text: str) -> list[Source]:
    out: list[Source] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(
                    Source(
                        uri,
                        suite,
                        tuple(fields.get("components", "main").split()),
                        fields.get("signed-by") or None,
                    )
                )
    return out


def host_sources() -> list[Source]:
    """The enabled ``deb`` sources of the host (both sources.list formats)."""
    found: list[Source] = []
    main = Path("/etc/apt/sources.list")
    if main.is_file():
        found += _parse_one_line(main.read_text())
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.suffix == ".list":
                found += _parse_one_line(f.read_text())
            elif f.suffix == ".sources":
                found += _parse_deb822(f.read_text())
    return found


def lab_sources(codename: str) -> list[Source]:
    """The host's Debian entries for ``codename*`` plus ``codename-backports``."""
    mine = [s for s in host_sources() if s.suite == codename or s.suite.startswith(codename + "-")]
    base = [s for s in mine if s.suite == codename]
    if not base:
        raise LabError(
            f"no apt source for Debian '{codename}' in /etc/apt; the lab downloads its guest packages from it"
        )
    if not any(s.suite == f"{codename}-backports" for s in mine):
        b = base[0]
        mine.append(Source(b.uri, f"{codename}-backports", ("main",), b.signed_by or _keyring()))
    return [Source(s.uri, s.suite, ("main",), s.signed_by or _keyring()) for s in mine]


def _keyring() -> str | None:
    return DEBIAN_KEYRING if os.path.exists(DEBIAN_KEYRING) else None


class PrivateApt:
    """apt-get / apt-cache with the lab's own sources, state and cache."""

    def __init__(self, paths: LabPaths) -> None:
        self.dir = paths.apt
        self.debs = paths.debs
        self.codename = host_codename()

    @property
    def sources_file(self) -> Path:
        return self.dir / "sources.list"

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::sourcelist": str(self.sources_file),
            "Dir::Etc::sourceparts": "-",
            "Dir::State": str(self.dir / "state"),
            "Dir::Cache": str(self.dir / "cache"),
            "Dir::State::status": "/var/lib/dpkg/status",
            "APT::Get::List-Cleanup": "0",
        }
        if os.geteuid() == 0:
            opts["APT::Sandbox::User"] = "root"  # our private dirs are not _apt's
        out: list[str] = []
        for k, v in opts.items():
            out += ["-o", f"{k}={v}"]
        return out

    def ensure_lists(self, refresh: bool = False) -> None:
        """Write sources.list and fetch the package lists (only when missing or asked)."""
        sources = "\n".join(s.line() for s in lab_sources(self.codename)) + "\n"
        lists = self.dir / "state" / "lists"
        stale = not self.sources_file.exists() or self.sources_file.read_text() != sources
        if not refresh and not stale and any(lists.glob("*_Packages*")):
            return
        for d in (lists / "partial", self.dir / "cache" / "archives" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        self.sources_file.write_text(sources)
        run(["apt-get", *self.options(), "-q", "update"], timeout=300)

    def versions(self, package: str) -> list[tuple[str, str]]:
        """(version, suite) pairs apt knows for ``package``."""
        out = run(["apt-cache", *self.options(), "madison", package], timeout=60, check=False)
        pairs: list[tuple[str, str]] = []
        for line in out.stdout.decode().splitlines():
            cols = [c.strip() for c in line.split("|")]
            if len(cols) >= 3 and cols[0] == package:
                suite = cols[2].split()[-3].split("/")[0] if len(cols[2].split()) >= 3 else ""
                pairs.append((cols[1], suite))
        return pairs

    def version_in(self, package: str, suite: str) -> str:
        for version, s in self.versions(package):
            if s == suite:
                return version
        raise LabError(
            f"package {package} not found in {suite} (lab apt lists in {self.dir}); "
            f"try `virt-qga lab build --refresh`"
        )

    def depends(self, package: str, version: str) -> str:
        out = run(["apt-cache", *self.options(), "show", f"{package}={version}"], timeout=60)
        for line in out.stdout.decode().splitlines():
            if line.startswith("Depends:"):
                return line.split(":", 1)[1].strip()
        return ""

    def download(self, package: str, version: str) -> Path:
        """The .deb of ``package=version`` in the lab's debs dir (downloaded once)."""
        self.debs.mkdir(parents=True, exist_ok=True)
        pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"
        found = sorted(self.debs.glob(pattern))
        if found:
            return found[0]
        run(
            ["apt-get", *self.options(), "-q", "download", f"{package}={version}"], cwd=self.debs, timeout=600
        )
        found = sorted(self.debs.glob(pattern))
        if not found:
            raise LabError(f"apt-get download {package}={version} produced no file in {self.debs}")
        return found[0]


def require_tools(tools: dict[str, str]) -> None:
    """Raise one LabError naming every missing tool and the package that has it."""
    missing = [f"{tool} ({pkg})" for tool, pkg in tools.items() if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing on this host: {', '.join(missing)}; {SETUP_HINT}")
