"""The report of one file copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CopyResult:
    direction: str            # "push" (into the guest) or "pull"
    guest_path: str
    local_path: str
    bytes: int = 0
    sha256: str = ""
    verified: bool = False
    verify_method: str = "none"   # "sha256sum", "read-back" or "none"
    mode: str | None = None
    atomic: bool = True
    duration: float = 0.0
    chunk_size: int = 0
    chunks: int = 0
    transport: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction, "guest_path": self.guest_path, "local_path": self.local_path,
            "bytes": self.bytes, "sha256": self.sha256, "verified": self.verified,
            "verify_method": self.verify_method, "mode": self.mode, "atomic": self.atomic,
            "duration": round(self.duration, 6), "mb_per_s": round(self.mb_per_s, 2),
            "chunk_size": self.chunk_size, "chunks": self.chunks, "transport": self.transport,
            "warnings": list(self.warnings),
        }
