"""The proxy's vocabulary: typed models of Sōzu's configuration objects, requests and
responses, and a pure re-implementation of Sōzu's main-process configuration state.

Nothing in this package does I/O or knows about protobuf; `sozu_operator.wire` maps these
types to and from each wire version.
"""
