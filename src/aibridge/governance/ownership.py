"""Stored-object isolation: a response or conversation made through the bridge is its maker's.

Every request goes upstream with the central key, so the upstream cannot tell users apart: any
member who learnt another's ``resp_…`` or ``conv_…`` id could read, cancel, delete or continue
it. This addon remembers who made each one and refuses the others.

- Made: the Responses reader reports the id of every answer (blocking: the answer's ``id``;
  streaming: ``response.created``, as soon as it arrives) and ``POST v1/conversations`` the id of
  the conversation, as ``Stored``. This addon remembers it in this process at once; the recorder
  (which hears ``stored`` too) writes its row (``aibridge_owned_objects``) in its next batch, with
  the interception's records: no database round trip on the request's path, and journaled like
  them (a crash loses no owner of an answer the client has).
- Checked: a request that names objects (``flow.info.references``: a passed-through path's
  ``{response}`` / ``{conversation}``, a Responses request's ``previous_response_id`` and
  ``conversation``) is refused with 404 in OpenAI's words when another user made one of them.
  Requests that name none (nearly all) cost nothing here.
- Made outside the bridge (no row): passed through; the upstream answers for it as before.

The race (a client that asks for its response the moment it has it, maybe from another worker or
replica): this process answers from memory for what it made itself; a row not found is looked
up again a few times over ``GRACE`` seconds (only ids without a row pay this), which covers the
recorder's batch delay (0.2 s) in another process. A database that cannot be read refuses
(503): isolation fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge.apis.base import Stored
from aibridge.bridge.flow import Addon, Flow, Reject
from aibridge.store import owned

log = logging.getLogger("aibridge.ownership")
RECENT = 50_000                               # ids this process made, answered from memory
RETRIES = (0.1, 0.2, 0.3, 0.4)                # pauses before looking again for a row not found
GRACE = sum(RETRIES)


def not_found(kind: str, object_id: str) -> str:
    """OpenAI's own words for an id it does not know."""
    if kind == "conversation":
        return f"Conversation with id '{object_id}' not found."
    return f"No response found with id '{object_id}'."


class OwnershipAddon(Addon):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._recent: OrderedDict[str, uuid.UUID] = OrderedDict()

    async def admit(self, flow: Flow) -> None:
        references = flow.info.references
        if not references:
            return
        for kind, object_id in references:
            owner = await self._owner(object_id)
            if owner is not None and owner != flow.actor.id:
                raise Reject(404, not_found(kind, object_id), reason="not_owner")

    def stored(self, flow: Flow, obj: Stored) -> None:
        self._recent.setdefault(obj.id, flow.actor.id)      # the first maker stays, as in the table
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    async def _owner(self, object_id: str) -> uuid.UUID | None:
        made_here = self._recent.get(object_id)
        if made_here is not None:
            return made_here
        for pause in (*RETRIES, None):
            try:
                found = await owned.owners(self.engine, [object_id])
            except Exception as exc:
                log.warning("ownership: cannot read the owners of stored objects (%s)", exc)
                raise Reject(503, "AI Bridge cannot check who owns this object right now; retry shortly",
                             {"Retry-After": "1"}, reason="ownership_unavailable") from exc
            if object_id in found:
                return found[object_id]
            if pause is not None:
                await asyncio.sleep(pause)
        return None
