"""Outputs of a relayed stream: each one is a frame sink attached to a :class:`media.relay.Relay`."""
