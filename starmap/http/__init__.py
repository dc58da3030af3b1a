"""The HTTP face of Star Map: views, routes, middleware and wire schemas.

Views parse and validate, ask an actor, and turn the reply (or a domain error)
into HTTP. They never touch storage themselves.
"""
