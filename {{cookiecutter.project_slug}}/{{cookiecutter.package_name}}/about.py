"""The answers this atom was generated with: defaults of the settings and the OpenAPI page.

This file is exempt from the line-length check: the answers are as long as they were typed.
"""

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
PROJECT_DESCRIPTION = {{ cookiecutter.project_description | tojson }}
API_PREFIX = {{ cookiecutter.api_prefix | tojson }}
PORT = {{ cookiecutter.port | int }}
WORKERS = {{ cookiecutter.workers | int }}
