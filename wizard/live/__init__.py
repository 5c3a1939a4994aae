"""Live pages: changes pushed to browsers as Server-Sent Events (htmx's SSE extension), one event per change.

events (the SSE format) <- feeds (what changed since a revision, rendered once) <- hub (one per web process:
wakes on new revisions, fans events out to every watcher of a topic) <- views_live (the async streams).
"""
