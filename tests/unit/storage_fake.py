"""An in-memory stand-in for the Cloud Storage reads the holder makes (bucket(...).blob(...)
.download_as_bytes()), for pure unit tests and the interleaving explorer: objects by name,
NotFound for a missing one, as the official client raises. Writes are modelled in the staging
bucket only (STAGING_BUCKET: the holder's staging objects, staged_objects.py): get_blob with
metadata, upload_from_string, open("wb") (the object appears at close, whole, as a resumable
upload's does), patch of the metadata, delete. The holder never writes an object it reads
(quarantine copies are tested on the emulator). `reads` counts downloads per object name.

An object stored gzip-compressed with `Content-Encoding: gzip` (`encodings`) is served as
stored when the download asks for the raw bytes, decompressed otherwise: Cloud Storage's
decompressive transcoding (https://cloud.google.com/storage/docs/transcoding), which the
Python client gets by decoding the response it asked for with `Accept-Encoding: gzip`."""

from __future__ import annotations

import gzip

from google.api_core.exceptions import NotFound


STAGING_BUCKET = "staging"


class FakeBlob:
    def __init__(self, objects, name, encodings=None, reads=None):
        self.objects, self.name = objects, name
        self.content_encoding = None  # known once downloaded, as the client reads it from the response
        self.encodings = encodings or {}
        self.reads = reads

    def download_as_bytes(self, raw_download=False):
        if self.reads is not None:
            self.reads[self.name] = self.reads.get(self.name, 0) + 1
        if self.name not in self.objects:
            raise NotFound(self.name)
        data = self.objects[self.name]
        self.content_encoding = self.encodings.get(self.name)
        if self.content_encoding == "gzip" and not raw_download:
            return gzip.decompress(data)
        return data


class _Writer:
    def __init__(self, blob):
        self.blob, self.parts = blob, []

    def write(self, data):
        self.parts.append(bytes(data))
        return len(data)

    def close(self):
        self.blob.upload_from_string(b"".join(self.parts))


class StagedBlob:
    """An object of the staging bucket: {name: (bytes, metadata)}."""

    def __init__(self, store: dict, name: str):
        self.store, self.name = store, name
        data, meta = store.get(name, (b"", None))
        self.metadata, self.size = (dict(meta) if meta else None), len(data)

    def upload_from_string(self, data, content_type=None, **_):
        self.store[self.name] = (bytes(data), dict(self.metadata or {}))
        self.size = len(data)

    def open(self, mode="rb", chunk_size=None, content_type=None, **_):
        assert mode == "wb" and chunk_size and chunk_size % (256 * 1024) == 0
        return _Writer(self)

    def patch(self):
        if self.name not in self.store:
            raise NotFound(self.name)
        data, meta = self.store[self.name]
        self.store[self.name] = (data, {**(meta or {}), **(self.metadata or {})})

    def delete(self):
        if self.store.pop(self.name, None) is None:
            raise NotFound(self.name)


class StagingBucket:
    def __init__(self, store: dict):
        self.store = store

    def get_blob(self, name):
        return StagedBlob(self.store, name) if name in self.store else None

    def blob(self, name, generation=None):
        return StagedBlob(self.store, name)


class FakeStorage:
    def __init__(self, objects: dict[str, bytes], encodings: dict[str, str] | None = None,
                 staged: dict | None = None, reads: dict | None = None):
        self.objects = objects
        self.encodings = {} if encodings is None else encodings  # name -> Content-Encoding
        self.staged = {} if staged is None else staged  # the staging bucket: name -> (bytes, metadata)
        self.reads = reads

    def bucket(self, name):
        return StagingBucket(self.staged) if name == STAGING_BUCKET else self

    def blob(self, name, generation=None):
        return FakeBlob(self.objects, name, self.encodings, self.reads)


def staged_text(staged: dict, uris: list[str]) -> bytes:
    """The staged NDJSON a load of these gs:// URIs reads (the staging bucket's objects)."""
    prefix = f"gs://{STAGING_BUCKET}/"
    missing = [u for u in uris if u[len(prefix):] not in staged]
    if missing:
        raise NotFound(f"Not found: URI {missing[0]}")
    return b"".join(staged[u[len(prefix):]][0] for u in uris)
