"""virt-qga: typed QEMU guest agent client, CLI and workflows."""

__version__ = "0.1.0"
