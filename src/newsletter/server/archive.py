"""``GET /archive/…``: the static site `newsletter archive` builds, if it has been built."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send


class ArchiveFiles:
    """Serve ws.root/archive-site when it exists; a 404 (not a crash) before the first build."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.static = StaticFiles(directory=str(folder), html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.folder.is_dir():
            raise HTTPException(404, "the archive has not been built (run `newsletter archive`)")
        await self.static(scope, receive, send)
