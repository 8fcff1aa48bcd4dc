"""Authoring: issue file -> Issue -> findings -> Rendered (html, text); no database."""
