"""Topics: what a client asks to join or leave, and the server accepts or rejects.

=============  ==========================================================================
module         what it holds
=============  ==========================================================================
``routes``     :class:`TopicRoute` (``router.topic("room:{id}")``: a name or a pattern,
               its join and leave handlers, the schema of a join's data) and the table
               that finds the route of a topic. Sans-I/O.
=============  ==========================================================================

The join and leave flow itself (answers in the connection's dialect, membership in the Hub)
is the router's: :mod:`crosswire.router.topics`. History, recovery and presence come next.
"""

from .routes import MAX_TOPIC, TopicRoute, TopicTable

__all__ = ["MAX_TOPIC", "TopicRoute", "TopicTable"]
