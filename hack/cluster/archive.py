"""Packs static programs into a single-layer image archive (docker-archive format) that
``ctr images import`` takes under any name: the cluster's add-ons (pause, CoreDNS,
local-path-provisioner and its busybox helper) without a registry.

    python3 archive.py OUT.tar NAME:TAG ENTRYPOINT SRC[=DEST] ...

SRC=DEST puts SRC at DEST in the image (default: /SRC's name); DEST ending in "/"
keeps SRC's name inside it; "@LINK=TARGET" adds a symlink.
"""

import hashlib
import io
import json
import os
import sys
import tarfile


def layer(entries: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()

        def parents(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)

        dirs.add("tmp")  # writable by anyone, sticky, as in any image
        info = tarfile.TarInfo("tmp")
        info.type, info.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(info)
        for entry in entries:
            if entry.startswith("@"):
                link, target = entry[1:].split("=", 1)
                parents(link)
                info = tarfile.TarInfo(link.strip("/"))
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                tar.addfile(info)
                continue
            src, _, dest = entry.partition("=")
            dest = dest or "/" + os.path.basename(src)
            if dest.endswith("/"):
                dest += os.path.basename(src)
            parents(dest)
            info = tar.gettarinfo(src, dest.strip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(src, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def main(out: str, name: str, entrypoint: str, entries: list[str]) -> None:
    data = layer(entries)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint.split(), "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config).encode()
    manifest = [{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]
    with tarfile.open(out, "w") as tar:
        for member, content in (
            ("layer.tar", data),
            ("config.json", config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
