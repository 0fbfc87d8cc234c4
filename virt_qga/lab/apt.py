"""A private apt setup: downloads .debs without touching the host's apt configuration.

The lab's guest artefacts come from fixed Debian releases, whatever the host runs: the
guest kernel and qemu-ga 7.2 from Debian 12 (bookworm), qemu-ga 10.0 from Debian 13
(trixie); see the pins in :mod:`virt_qga.lab.build`. Rather than adding suites to
``/etc/apt``, the lab writes its own ``sources.list`` for exactly those releases (their
``-updates`` and ``-security`` suites included) on the Debian mirror URIs the host
already uses, and points apt at a private state and cache directory. The host's dpkg
status is still read, but nothing on the host is installed or changed.
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


#: Debian releases the lab knows, oldest first, and the hosts it runs on.
DEBIAN_RELEASES: dict[str, str] = {"bookworm": "12", "trixie": "13"}
SUPPORTED_HOSTS = ("bookworm", "trixie")

#: Suites the lab's private apt lists (the guests' releases; see build.GUEST_SUITES).
LAB_SUITES = ("bookworm", "trixie")


def host_codename() -> str:
    """The Debian codename of the host, or a one-line LabError when the lab cannot run here."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise LabError("the lab needs a Debian 12 or 13 host with apt-get and dpkg; none found")
    try:
        text = Path("/etc/os-release").read_text()
    except OSError as exc:
        raise LabError("cannot read /etc/os-release: the lab needs a Debian 12 or 13 host") from exc
    fields = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if codename not in SUPPORTED_HOSTS:
        name = fields.get("PRETTY_NAME", "").strip('"') or "an unknown system"
        raise LabError(
            f"the lab runs on Debian 12 (bookworm) or 13 (trixie); this host is {name}"
        )
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


def _base_suite(suite: str) -> str:
    return suite.split("-", 1)[0]


def debian_mirrors(sources: list[Source] | None = None) -> tuple[str, str | None]:
    """(archive URI, security URI or None) of the Debian mirror the host uses.

    The archive URI is the first enabled entry for a Debian release that is not a
    ``-security`` suite; the security URI the first ``-security`` entry.
    """
    found = host_sources() if sources is None else sources
    debian = [s for s in found if _base_suite(s.suite) in (*DEBIAN_RELEASES, "sid", "forky")]
    archive = next((s.uri for s in debian if not s.suite.endswith("-security")), None)
    security = next((s.uri for s in debian if s.suite.endswith("-security")), None)
    if archive is None:
        raise LabError(
            "no Debian mirror in /etc/apt (the lab downloads its guest packages and the "
            "debian13 root from the mirror the host uses)"
        )
    return archive, security


def lab_sources(sources: list[Source] | None = None, suites: tuple[str, ...] = LAB_SUITES) -> list[Source]:
    """``<suite>``, ``<suite>-updates`` and ``<suite>-security`` of every lab suite, on the
    host's mirrors."""
    archive, security = debian_mirrors(sources)
    signed_by = _keyring()
    out: list[Source] = []
    for suite in suites:
        out.append(Source(archive, suite, ("main",), signed_by))
        out.append(Source(archive, f"{suite}-updates", ("main",), signed_by))
        if security is not None:
            out.append(Source(security, f"{suite}-security", ("main",), signed_by))
    return out


def _keyring() -> str | None:
    return DEBIAN_KEYRING if os.path.exists(DEBIAN_KEYRING) else None


class PrivateApt:
    """apt-get / apt-cache with the lab's own sources, state and cache."""

    def __init__(self, paths: LabPaths) -> None:
        self.dir = paths.apt
        self.debs = paths.debs
        self.codename = host_codename()  # refuses hosts the lab does not run on

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
            # Some hosts (container images) switch apt's binary caches off; without them
            # every apt-cache call re-parses all lists (2-4 s instead of 30 ms).
            "Dir::Cache::pkgcache": "pkgcache.bin",
            "Dir::Cache::srcpkgcache": "srcpkgcache.bin",
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
        wanted = lab_sources()
        sources = "\n".join(s.line() for s in wanted) + "\n"
        lists = self.dir / "state" / "lists"
        stale = not self.sources_file.exists() or self.sources_file.read_text() != sources
        # Every suite must have its list: an update that died half-way (or lists made by an
        # older lab with fewer suites) must not pass for a complete one.
        missing = [s.suite for s in wanted if not any(lists.glob(f"*_dists_{s.suite}_*Packages*"))]
        if not refresh and not stale and not missing:
            return
        for d in (lists / "partial", self.dir / "cache" / "archives" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        self.sources_file.write_text(sources)
        try:
            run(["apt-get", *self.options(), "-q", "update"], timeout=300)
        except BaseException:
            self.sources_file.unlink(missing_ok=True)  # the next call fetches again
            raise

    def versions(self, package: str) -> list[tuple[str, str]]:
        """(version, suite) pairs apt knows for ``package``, newest first."""
        return self.versions_of([package]).get(package, [])

    def versions_of(self, packages: list[str]) -> dict[str, list[tuple[str, str]]]:
        """(version, suite) pairs, newest first, for several packages in one apt-cache call."""
        out: dict[str, list[tuple[str, str]]] = {p: [] for p in packages}
        if not packages:
            return out
        res = run(["apt-cache", *self.options(), "madison", *packages], timeout=120, check=False)
        for line in res.stdout.decode().splitlines():
            cols = [c.strip() for c in line.split("|")]
            if len(cols) >= 3 and cols[0] in out:
                words = cols[2].split()
                suite = words[-3].split("/")[0] if len(words) >= 3 else ""
                out[cols[0]].append((cols[1], suite))
        return out

    def version_in(self, package: str, suite: str) -> str:
        for version, s in self.versions(package):
            if s == suite:
                return version
        raise LabError(
            f"package {package} not found in {suite} (lab apt lists in {self.dir}); "
            f"try `virt-qga lab build --refresh`"
        )

    def newest_in_release(self, packages: list[str], release: str, strict: bool = True) -> dict[str, str]:
        """The newest version of each package in a Debian release: ``release`` itself and its
        ``-updates`` and ``-security`` suites (never ``-backports``). With ``strict``, a
        package the release lacks is an error; else it is left out (virtual packages)."""
        family = {release, f"{release}-updates", f"{release}-security"}
        found: dict[str, str] = {}
        for package, pairs in self.versions_of(packages).items():
            for version, suite in pairs:  # madison lists the newest first
                if suite in family:
                    found[package] = version
                    break
        missing = [p for p in packages if p not in found]
        if missing and strict:
            raise LabError(
                f"not found in Debian {release} (lab apt lists in {self.dir}): {', '.join(missing)}; "
                "try `virt-qga lab build --refresh`"
            )
        return found

    def show(self, pairs: dict[str, str]) -> dict[str, dict[str, str]]:
        """The control fields (``Depends``, ``Section``, ...) of ``package=version`` pairs."""
        if not pairs:
            return {}
        res = run(["apt-cache", *self.options(), "show", *(f"{p}={v}" for p, v in pairs.items())],
                  timeout=120)
        out: dict[str, dict[str, str]] = {}
        for stanza in re.split(r"\n\s*\n", res.stdout.decode()):
            fields: dict[str, str] = {}
            key = ""
            for line in stanza.splitlines():
                if line[:1].isspace() and key:
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, value = line.split(":", 1)
                    fields[key] = value.strip()
            name = fields.get("Package")
            if name in pairs and fields.get("Version") == pairs[name] and name not in out:
                out[name] = fields
        return out

    def depends(self, package: str, version: str) -> str:
        return self.show({package: version}).get(package, {}).get("Depends", "")

    def download(self, package: str, version: str) -> Path:
        """The .deb of ``package=version`` in the lab's debs dir (downloaded once)."""
        return self.download_many({package: version})[package]

    def download_many(self, pairs: dict[str, str]) -> dict[str, Path]:
        """The .debs of ``package=version`` pairs; the missing ones in one apt-get call."""
        self.debs.mkdir(parents=True, exist_ok=True)

        def cached(package: str, version: str) -> Path | None:
            found = sorted(self.debs.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
            return found[0] if found else None

        todo = [f"{p}={v}" for p, v in pairs.items() if cached(p, v) is None]
        if todo:
            run(["apt-get", *self.options(), "-q", "download", *todo], cwd=self.debs, timeout=900)
        out: dict[str, Path] = {}
        for p, v in pairs.items():
            deb = cached(p, v)
            if deb is None:
                raise LabError(f"apt-get download {p}={v} produced no file in {self.debs}")
            out[p] = deb
        return out


def require_tools(tools: dict[str, str]) -> None:
    """Raise one LabError naming every missing tool and the package that has it."""
    missing = [f"{tool} ({pkg})" for tool, pkg in tools.items() if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing on this host: {', '.join(missing)}; {SETUP_HINT}")
