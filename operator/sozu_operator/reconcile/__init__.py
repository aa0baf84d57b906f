"""The pure core: desired proxy state from resources, diff against live state, ordered plan.

No I/O here. Resources come in as parsed models, live state as a `ProxyState` snapshot, and the
result is a `Plan` of typed requests that an edge (CLI or operator) sends over the socket.
"""
