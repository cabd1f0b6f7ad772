"""Server adapters: each translates one server's WebSocket API to crosswire's hooks.

=================  ==========================================  ========================
module             server                                      extra
=================  ==========================================  ========================
``websockets``     standalone, the ``websockets`` library      (core, the default)
``picows``         standalone, ``picows`` (fastest)            ``crosswire[picows]``
``asgi``           any ASGI server (uvicorn, hypercorn, ...)   ``crosswire[uvicorn]``
``aiohttp``        an aiohttp web handler                      ``crosswire[aiohttp]``
=================  ==========================================  ========================
"""

__all__: list[str] = []
