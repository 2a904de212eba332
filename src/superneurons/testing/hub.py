"""A local Hugging Face Hub cache built by hand, so Hub code paths run offline (`HF_HUB_OFFLINE=1`).

The layout is the one `huggingface_hub` writes (and `huggingface_hub.scan_cache_dir` reads):

    {cache}/models--{user}--{repo}/blobs/{sha256 of the file}
    {cache}/models--{user}--{repo}/snapshots/{commit}/{path in repo}  -> relative symlink to the blob
    {cache}/models--{user}--{repo}/refs/{revision}                    the commit, no newline

    >>> cache_repo(tmp / "hub", "user/repo", {"pope/classifier.json": Path("clf/classifier.json")})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path


def cache_repo(cache_dir: str | Path, repo_id: str, files: Mapping[str, str | Path], revision: str = "main",
               commit: str | None = None) -> Path:
    """Put `files` ({path in repo: local file}) into the cache as one commit of `repo_id`; return its snapshot.

    `commit` defaults to a hash of the contents; `refs/{revision}` points at it.
    """
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    blobs = storage / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    digests = {}
    for path_in_repo, src in sorted(files.items()):
        data = Path(src).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        digests[path_in_repo] = digest
    commit = commit or hashlib.sha1("".join(f"{k}:{v}" for k, v in digests.items()).encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    for path_in_repo, digest in digests.items():
        link = snapshot / path_in_repo
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blobs / digest, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot
