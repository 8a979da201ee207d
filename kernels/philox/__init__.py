"""The Philox4x32-10 counter-based generator (SPEC §3): constants and twins."""
