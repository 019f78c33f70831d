"""Settings of a shared lake (PostgreSQL catalog, shared data path); no duckdb import, so reading the
config (and `newsmon --help`) does not load the database engine."""
from __future__ import annotations

import re
from dataclasses import dataclass

# A shared lake: its catalog in PostgreSQL, in a schema of its own; the dedup keys live beside it
# (storage/pgkeys.py). httpfs is loaded only for an s3:// data path.
PG_EXTENSIONS = ("postgres_scanner", "ducklake")


@dataclass(frozen=True)
class S3Access:
    """Credentials and endpoint for an s3:// data path (any S3-compatible store)."""

    key_id: str
    secret: str
    region: str | None = None
    endpoint: str | None = None  # host[:port] of a non-AWS store (MinIO, R2, Ceph...)
    url_style: str | None = None  # 'path' for most non-AWS stores, 'vhost' for AWS
    use_ssl: bool = True


@dataclass(frozen=True)
class SharedCatalog:
    """A lake several machines write: DuckLake catalog in PostgreSQL, data files in a shared place."""

    conninfo: str  # libpq "key=value ..." string
    data_path: str  # absolute folder mounted at the same path everywhere, or s3://bucket/prefix/
    s3: S3Access | None = None

    def extensions(self) -> tuple[str, ...]:
        """The extensions a session needs to attach this lake."""
        return PG_EXTENSIONS + (("httpfs",) if self.s3 else ())

    def data_url(self) -> str:
        """The data path as DuckLake stores it (always ending in '/')."""
        return self.data_path.rstrip("/") + "/"

    def public_conninfo(self) -> str:
        """The connection string without its password (libpq then reads PGPASSWORD or ~/.pgpass)."""
        return re.sub(r"\s*\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", "", self.conninfo).strip()
