"""newsletter: monthly issues in YAML, built into responsive HTML email and sent through SendGrid."""

__version__ = "0.1.0"
