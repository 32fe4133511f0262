"""Local emulation: the stack (`oddsbatch up/down/status`), the event bridge, replay/wait."""
