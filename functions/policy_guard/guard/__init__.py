"""PolicyGuard: is the deployed stage policy usable? ``checks`` decides (pure), ``handler`` adapts Lambda to it."""
