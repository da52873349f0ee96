"""Ray Serve deployments: thin shims over ``serve_app`` (ingress, entity extractor, model server, job worker)
and the application builder that composes them from one validated config."""
