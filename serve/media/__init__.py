"""The media service (see SPEC: Media service)."""
