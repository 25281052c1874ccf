"""A job's artifacts: small ones as Redis values, big ones (weights of real models) as
files in the artifact store, a directory shared by API and workers."""

from __future__ import annotations

import shutil

from aimc_store.base import Part


class Artifacts(Part):
    """`store.artifacts`: what a job's run leaves behind, and its owner's usage."""

    def put(self, job_id: str, name: str, data: bytes) -> None:
        """Keep an artifact: in Redis if small or there is no artifact store, else as a
        file in the store (written whole, then renamed: a reader never sees half)."""
        pipe = self.r.pipeline()
        if self.backend.artifact_dir is not None and len(data) > self.backend.inline_max_bytes:
            path = self.backend.artifact_dir / self.keys.artifact_folder(job_id) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".part")
            partial.write_bytes(data)
            partial.replace(path)
            pipe.hset(self.key("job", job_id, "files"), name, len(data))
        else:
            pipe.set(self.key("job", job_id, "artifact", name), data)
        pipe.sadd(self.key("job", job_id, "artifacts"), name)
        # the job's artifact bytes, for its owner's storage limit (artifact_usage): a key
        # of the job's own (keys.JOB_SUFFIXES), so it goes when the job is deleted or
        # expires (a field of its hash would make a hash of one field of a deleted job)
        pipe.incrby(self.key("job", job_id, "artifact_bytes"), len(data))
        pipe.execute()

    def usage(self, owner: str) -> int:
        """Bytes of the artifacts of the owner's jobs still kept (in Redis or files)."""
        ids = self.r.zrange(self.key("user", owner, "jobs"), 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.get(self.key("job", job_id.decode(), "artifact_bytes"))
        return sum(int(n) for n in pipe.execute() if n is not None)

    def names(self, job_id: str) -> list[str]:
        return sorted(n.decode() for n in self.r.smembers(self.key("job", job_id, "artifacts")))

    def find(self, job_id: str, name: str) -> bytes | str | None:
        """The artifact's bytes if Redis keeps it; if the artifact store does, its path
        relative to the store's root (the file may have gone); None if there is none."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key("job", job_id, "artifact", name))
        pipe.hexists(self.key("job", job_id, "files"), name)
        data, on_disk = pipe.execute()
        if data is not None:
            return bytes(data)
        return f"{self.keys.artifact_folder(job_id)}/{name}" if on_disk else None

    def read(self, job_id: str, name: str) -> bytes | None:
        """The artifact's bytes wherever they are kept; None if absent or its file gone."""
        found = self.find(job_id, name)
        if isinstance(found, str):
            path = (
                self.backend.artifact_dir / found if self.backend.artifact_dir is not None else None
            )
            return path.read_bytes() if path is not None and path.is_file() else None
        return found

    def remove_files(self, job_id: str) -> None:
        if self.backend.artifact_dir is not None:
            folder = self.backend.artifact_dir / self.keys.artifact_folder(job_id)
            shutil.rmtree(folder, ignore_errors=True)

    def remove_expired_files(self) -> list[str]:
        """Delete the artifact files of jobs whose keys expired (the retention) or were
        removed; the job ids whose files went."""
        if self.backend.artifact_dir is None:
            return []
        root = self.backend.artifact_dir / self.keys.artifact_folder("")
        if not root.is_dir():
            return []
        removed = []
        for folder in root.iterdir():
            if folder.is_dir() and not self.r.exists(self.key("job", folder.name)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed
