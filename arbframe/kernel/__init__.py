"""The plugin machinery: driver interfaces, hook specs, entry-point discovery and loading, config loading and
schema composition, the Kernel object, shared metric families, the plugin reference generator.

Stands on core only; plugins see it through the names exported by the top-level ``arbframe`` package."""
