"""The route DSL (builders), the route model (data) and the compiler (model -> processors)."""
