"""Private plumbing shared by every layer: statistics, logging, fork hooks, deadlines.

Nothing here is public API. Every other lockkit package may import from here; this
package imports nothing from lockkit but :mod:`lockkit.exceptions`.
"""
