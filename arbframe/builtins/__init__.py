"""The kernel's own plugins: drivers and hook modules that take the same path as third-party ones."""
