"""The HTTP surface: a Quart-Trio app served by Hypercorn's trio worker."""
