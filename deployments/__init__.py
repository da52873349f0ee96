"""Ray Serve deployments: thin shims over ``serve_app`` (ingress, entity extractor, model server)."""
