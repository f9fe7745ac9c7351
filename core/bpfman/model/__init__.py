"""The wire model: requests, replies, records, errors (light: the CLI imports it)."""

#: The metadata key naming a program's application (upstream bpfman's
#: ``--application``); a new link inherits it from its program.
APPLICATION_KEY = "bpfman_application"
