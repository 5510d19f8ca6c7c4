"""What notify decides without I/O: who subscribes to an event, what a message says about its lead."""
