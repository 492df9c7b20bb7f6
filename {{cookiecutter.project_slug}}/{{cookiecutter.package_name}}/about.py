"""The answers this atom was generated with: defaults of the settings and the OpenAPI page.

This file is exempt from the line-length check: the answers are as long as they were typed.
"""

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
PROJECT_DESCRIPTION = {{ cookiecutter.project_description | tojson }}
API_PREFIX = {{ cookiecutter.api_prefix | tojson }}
PORT = {{ cookiecutter.port | int }}
WORKERS = {{ cookiecutter.workers | int }}

# The atom-template release this atom's runtime comes from, shown by the ready route, the
# OpenAPI version and the atom_template_info metric. make upgrade moves both; the post-gen
# hook writes the template's git commit ("" when the template was not a git checkout).
TEMPLATE_VERSION = {{ cookiecutter._template_version | tojson }}
TEMPLATE_COMMIT = ""
