"""tapeloop's TensorBoard plugin: the Forgetting tab (see `plugin`)."""
