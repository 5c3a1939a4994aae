"""The carp layer: pure facts (command + parser) and operations (commands only when a change is needed).

No I/O here: no database, no network. Everything that reaches a remote shell is validated and quoted here.
"""
