"""Resharding in the gateway (issue 12): the driver of a resize, its admin routes and status."""
