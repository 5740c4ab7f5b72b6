"""`newsletter serve`: one small ASGI app that handles what comes back after a send.

* ``GET/POST /u/{token}``  the unsubscribe page and RFC 8058 one-click (:mod:`.unsubscribe`);
* ``GET/POST /subscribe``, ``/confirm/{token}``  sign-up with double opt-in (:mod:`.signup`);
* ``GET/POST /p/{token}``  the reader's preferences page (:mod:`.preferences`);
* ``POST /webhooks/<provider>``  each provider's signed event webhook, one route per
  adapter in ``esp.registry.WEBHOOKS`` (:mod:`.webhooks`, :mod:`newsletter.esp.webhooks`);
* ``GET /archive/…``  the static archive, if `newsletter archive` built it (:mod:`.archive`);
* ``GET /healthz``  for monitoring: 503 while a promised suppression is not yet in
  suppressions.csv (:mod:`.keeper`).

Where things live: :mod:`.app` builds the app (routes, middleware, error answers)
and its :mod:`.context`; :mod:`.keeper` gets every accepted suppression into
suppressions.csv through the state database; :mod:`.bodies` reads untrusted bodies
with size and time limits; :mod:`.pages` renders the reader's pages; :mod:`.logs`
keeps tokens out of the log; :mod:`.http` runs it all under uvicorn with header and
body deadlines and a connection cap.
"""

from .app import create_app
from .context import ServerContext, context_of
from .http import serve_forever
from .logs import TokenMask, mask_tokens

__all__ = ["ServerContext", "TokenMask", "context_of", "create_app", "mask_tokens", "serve_forever"]
