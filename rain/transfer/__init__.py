"""Moving objects' bytes between processes: governors, clients and the REST server.

``peer`` is the client side of a governor's data port (``PeerPool``), ``sinks`` says where
received chunks go (memory, a file, a directory, an HTTP response), ``splice`` moves a
body from the socket into its file without reading it, ``stream`` sends a stored object
as chunks with flow control, and ``upload`` is what a client streams into a governor's
store (its big constants). None of it imports the governor, so clients and
the REST server use it too.
"""
