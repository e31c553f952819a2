"""atrest: encryption at rest for contact-center data on AWS."""

__version__ = "0.1.0"
