"""Protocol logic with no I/O: no asyncio, no aiohttp, no clock reads."""
