"""The data model everything speaks: records (models, their table/row forms), cache keys, errors, secret masking.

Imports nothing else of the kernel: every other package stands on it."""
