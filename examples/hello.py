"""Hello, crosswire: each message is echoed, "/all ..." goes to everyone else.

crosswire run examples.hello:app        # or: python examples/hello.py
"""

import crosswire


def on_open(peer: crosswire.Peer) -> None:
    peer.subscribe("room")
    peer.send({"hello": peer.id})  # dicts and lists go out as JSON text


def on_message(peer: crosswire.Peer, message: crosswire.Message) -> None:
    text = message.text()
    if text.startswith("/all "):
        peer.publish("room", text.removeprefix("/all "))  # every subscriber but the sender
    else:
        peer.send(text)


def on_close(peer: crosswire.Peer, code: int, reason: str) -> None:
    print(f"{peer!r} left with {code}")


app = crosswire.App(crosswire.define_hooks(open=on_open, message=on_message, close=on_close))

if __name__ == "__main__":
    crosswire.serve(app, port=8000)  # Ctrl+C closes every connection with 1001
