"""Polls of a counting client (the project's bullet.js): one poll at a time carries its count.

A counting client has one poll in flight at most, so a new poll from it
means the one before is dead, even if the server has not noticed (a silent
drop: a phone changing network). Two parked polls of one counting session
would each take a message, and the count the client reports could then not
say which one it received.
"""

from __future__ import annotations

import asyncio

from tests.helpers import POLL_HEADERS, cache_buster, make_app, wait_for

TAB = "tab-abcdef-1"


def counted(seen: int) -> dict[str, str]:
    return {**POLL_HEADERS, "X-Bullet-Tab": TAB, "X-Bullet-Seen": str(seen)}


async def test_a_new_poll_replaces_a_silently_dead_one_and_nothing_is_lost_or_doubled(
    aiohttp_client,
):
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    first = await client.get("/bullet", headers=counted(0), params=cache_buster())
    assert first.status == 204
    assert first.headers["X-Bullet-Session"] == "fresh"
    sid = first.cookies[f"bullet_sid.{TAB}"].value

    # The poll the client lost without either side noticing: its answer goes nowhere.
    lost = asyncio.ensure_future(client.get("/bullet", headers=counted(0)))
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    conn = endpoint.registry.get(sid)
    await wait_for(lambda: conn.parked_polls == 1)
    # The client polls again, with the same count.
    again = asyncio.ensure_future(client.get("/bullet", headers=counted(0)))
    await wait_for(lambda: lost.done() or conn.parked_polls == 2)

    await endpoint.hub.send(sid, "m1")
    await endpoint.hub.send(sid, "m2")
    received = []
    answer = await asyncio.wait_for(again, 5)
    if answer.status == 200:
        received.append(await answer.text())
    seen = len(received)
    while len(received) < 2:
        answer = await asyncio.wait_for(
            client.get("/bullet", headers=counted(seen), params=cache_buster()), 5
        )
        assert answer.status == 200, answer.status
        received.append(await answer.text())
        seen += 1
    assert received == ["m1", "m2"]
    assert (await asyncio.wait_for(lost, 5)).status == 204  # let go when the new one came
