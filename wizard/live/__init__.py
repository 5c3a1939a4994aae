"""Live pages: changes pushed to browsers as Server-Sent Events (htmx's SSE extension), one event per change.

sse (the format) <- feeds (what changed since a revision, rendered once) <- hub (one per web process: wakes on
new revisions, fans events out to every watcher of a topic) <- streams (what a request subscribes to, who may
watch) <- asgi (the streams as deployed) and views_live (the same through Django, and the polling fallback).
"""
