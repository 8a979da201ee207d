"""The Philox4x32-10 counter-based generator (docs/contract/random-stream.md): constants and
twins."""
