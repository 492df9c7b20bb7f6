"""The answers this atom was generated with: defaults of the settings and the OpenAPI page.

This file is exempt from the line-length check: the answers are as long as they were typed.
"""

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
PROJECT_DESCRIPTION = {{ cookiecutter.project_description | tojson }}
API_PREFIX = {{ cookiecutter.api_prefix | tojson }}
PORT = {{ cookiecutter.port | int }}
WORKERS = {{ cookiecutter.workers | int }}

# The atom-template version this atom's runtime comes from, as cookiecutter.json declares
# it: a release ("0.2.0") in the release's own commit only, else the coming release's
# development version ("0.2.0.dev0"). The post-gen hook writes the template's git commit
# ("" when the template was not a git checkout); make upgrade moves both.
TEMPLATE_DECLARED = {{ cookiecutter._template_version | tojson }}
TEMPLATE_COMMIT = ""
# What the atom reports (ready reply, OpenAPI version, atom_template_info): a development
# version names its commit, as a PEP 440 local label: "0.2.0.dev0+1a2b3c4d5e6f".
TEMPLATE_VERSION = (
    f"{TEMPLATE_DECLARED}+{TEMPLATE_COMMIT[:12]}"
    if ".dev" in TEMPLATE_DECLARED and TEMPLATE_COMMIT
    else TEMPLATE_DECLARED
)
